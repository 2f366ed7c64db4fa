from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from exceptions.models import OPEN_STATUSES, AuditEntry, ExceptionCase


def audit_entries(
    *,
    object_type: str = "",
    object_id: str = "",
    actor: str = "",
    action: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AuditEntry]:
    """Audit entries, newest first, filtered as the audit page offers."""
    qs = AuditEntry.objects.all().order_by("-seq")
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if actor:
        qs = qs.filter(actor_label__icontains=actor)
    if action:
        qs = qs.filter(Q(action=action) | Q(action__startswith=action.rstrip(".") + "."))
    if date_from:
        qs = qs.filter(at__gte=timezone.make_aware(datetime.combine(date_from, time.min), UTC))
    if date_to:
        # date_to is inclusive: everything before the next day's midnight (UTC).
        qs = qs.filter(
            at__lt=timezone.make_aware(datetime.combine(date_to + timedelta(days=1), time.min), UTC)
        )
    return qs


def audit_object_types() -> list[str]:
    return list(AuditEntry.objects.order_by().values_list("object_type", flat=True).distinct())


def open_cases(*, kind: str = "") -> QuerySet[ExceptionCase]:
    qs = ExceptionCase.objects.filter(status__in=OPEN_STATUSES)
    return qs.filter(kind=kind) if kind else qs
