"""The queue's filters (django-filter), shared by the page, its CSV export and the API."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

# django-filter ships no type information and types-django-filter is not installed.
import django_filters as df  # type: ignore[import-untyped]
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, F, OuterRef, QuerySet
from django.db.models.expressions import Combinable
from django.http import QueryDict
from django.utils import timezone

from core.models import LegalEntity
from exceptions.models import (
    OPEN_STATUSES,
    CaseKind,
    CaseProposal,
    CaseStatus,
    ExceptionCase,
    ProposalStatus,
    Severity,
)

#: The oldest age the queue filters by: a century.
MAX_AGE_DAYS = 36_500
ANY_OPEN = "open_any"
ALL = "all"
STATUS_CHOICES = [(ANY_OPEN, "Any open"), (ALL, "All"), *CaseStatus.choices]
VIEW_CHOICES = [
    ("mine", "Mine"),
    ("awaiting_my_approval", "Awaiting my approval"),
    ("past_due", "Past due"),
]
DUE_CHOICES = [
    ("past_due", "Past due"),
    ("today", "Due within 24 h"),
    ("week", "Due within 7 days"),
]


# FilterSet is Any without django-filter's stubs.


class CaseFilter(df.FilterSet):  # type: ignore[misc]
    """Every filter of the queue. `status` defaults to any open status."""

    view = df.ChoiceFilter(choices=VIEW_CHOICES, method="filter_view", label="Saved view")
    kind = df.ChoiceFilter(choices=CaseKind.choices)
    status = df.ChoiceFilter(choices=STATUS_CHOICES, method="filter_status", empty_label=None)
    severity = df.ChoiceFilter(choices=Severity.choices)
    entity = df.ModelChoiceFilter(
        field_name="legal_entity",
        queryset=LegalEntity.objects.order_by("code"),
        to_field_name="code",
        label="Legal entity",
    )
    customer = df.CharFilter(field_name="customer__code", label="Customer code")
    connection = df.CharFilter(field_name="connection_ref", label="ERP connection")
    assignee = df.CharFilter(method="filter_assignee", label="Assignee (user name, or 'none')")
    # Ages are days back from now: a timedelta past MAX_AGE_DAYS overflowed (a 500, not a 400).
    age_min = df.NumberFilter(
        method="filter_age_min", label="Older than (days)", min_value=0, max_value=MAX_AGE_DAYS
    )
    age_max = df.NumberFilter(
        method="filter_age_max", label="Younger than (days)", min_value=0, max_value=MAX_AGE_DAYS
    )
    amount_min = df.NumberFilter(field_name="amount_at_stake", lookup_expr="gte", label="Amount ≥")
    amount_max = df.NumberFilter(field_name="amount_at_stake", lookup_expr="lte", label="Amount ≤")
    due = df.ChoiceFilter(choices=DUE_CHOICES, method="filter_due")
    sort = df.OrderingFilter(
        fields=(
            ("last_seen_at", "last_seen"),
            ("first_seen_at", "opened"),
            ("due_at", "due"),
            ("amount_at_stake", "amount"),
            ("severity_rank", "severity"),
            ("kind", "kind"),
            ("status", "status"),
            ("occurrence_count", "occurrences"),
            ("id", "id"),
        ),
        label="Sort",
    )

    class Meta:
        model = ExceptionCase
        fields: list[str] = []

    def __init__(
        self,
        data: QueryDict | dict[str, Any] | None = None,
        *args: Any,
        user: AbstractBaseUser | AnonymousUser | None = None,
        **kwargs: Any,
    ) -> None:
        data = data.copy() if data is not None else {}
        if not data.get("status"):
            data["status"] = ANY_OPEN
        super().__init__(data, *args, **kwargs)
        self.user = user
        self.now = timezone.now()

    def simple_scope(self) -> tuple[list[str] | None, str | None]:
        """(statuses, kind) when the list is filtered by nothing but status and kind (its size
        is then known from the case counts), else (None, None)."""
        data = self.form.cleaned_data if self.is_bound and self.form.is_valid() else {}
        others = {k: v for k, v in data.items() if k not in ("status", "kind", "sort") and v}
        if others:
            return None, None
        status = data.get("status") or ANY_OPEN
        if status == ANY_OPEN:
            statuses = [str(s) for s in OPEN_STATUSES]
        elif status == ALL:
            statuses = [str(s) for s, _ in CaseStatus.choices]
        else:
            statuses = [status]
        return statuses, data.get("kind") or ""

    def filter_queryset(self, queryset: QuerySet[ExceptionCase]) -> QuerySet[ExceptionCase]:
        qs: QuerySet[ExceptionCase] = super().filter_queryset(queryset)
        # Newest first unless a sort is asked for. The id breaks ties (pages never overlap) in
        # the sort's own direction, and amounts sort unknown last, so each sort can walk its
        # index (models.ExceptionCase.Meta.indexes) instead of sorting 100,000 rows.
        # Not sorted: by due date (most overdue first) when filtered by due or in the past-due
        # view, newest-opened first when filtered by age (each walks its own index), else
        # newest activity first.
        data = self.form.cleaned_data
        by_due = data.get("due") or data.get("view") == "past_due"
        by_age = data.get("age_min") or data.get("age_max")
        default = "due_at" if by_due else "-first_seen_at" if by_age else "-last_seen_at"
        order = list(qs.query.order_by) or [default]
        first = str(order[0])
        descending = first.startswith("-")
        terms: list[str | Combinable] = []
        for term in order:
            name = str(term).lstrip("-")
            if name == "amount_at_stake":
                f = F(name)
                terms.append(
                    f.desc(nulls_last=True)
                    if str(term).startswith("-")
                    else f.asc(nulls_first=True)
                )
            else:
                terms.append(term)
        return qs.order_by(*terms, "-id" if descending else "id")

    def filter_status(
        self, qs: QuerySet[ExceptionCase], name: str, value: str
    ) -> QuerySet[ExceptionCase]:
        if value in ("", ANY_OPEN):
            return qs.filter(status__in=[str(s) for s in OPEN_STATUSES])
        if value == ALL:
            return qs
        return qs.filter(status=value)

    def filter_view(
        self, qs: QuerySet[ExceptionCase], name: str, value: str
    ) -> QuerySet[ExceptionCase]:
        user = self.user
        if value == "mine":
            return qs.filter(assignee_id=getattr(user, "pk", None))
        if value == "past_due":
            return qs.filter(status__in=[str(s) for s in OPEN_STATUSES], due_at__lt=self.now)
        if value == "awaiting_my_approval":
            pending = CaseProposal.objects.filter(
                case_id=OuterRef("pk"), status=ProposalStatus.PENDING
            )
            if user is not None and getattr(user, "pk", None):
                pending = pending.exclude(proposed_by_id=user.pk)
            return qs.filter(Exists(pending), status=CaseStatus.AWAITING_APPROVAL)
        return qs

    def filter_assignee(
        self, qs: QuerySet[ExceptionCase], name: str, value: str
    ) -> QuerySet[ExceptionCase]:
        value = value.strip()
        if value.lower() == "none":
            return qs.filter(assignee__isnull=True)
        return qs.filter(assignee__username=value) if value else qs

    def filter_age_min(
        self, qs: QuerySet[ExceptionCase], name: str, value: Decimal
    ) -> QuerySet[ExceptionCase]:
        return qs.filter(first_seen_at__lte=self.now - timedelta(days=float(value)))

    def filter_age_max(
        self, qs: QuerySet[ExceptionCase], name: str, value: Decimal
    ) -> QuerySet[ExceptionCase]:
        return qs.filter(first_seen_at__gte=self.now - timedelta(days=float(value)))

    def filter_due(
        self, qs: QuerySet[ExceptionCase], name: str, value: str
    ) -> QuerySet[ExceptionCase]:
        if value == "past_due":
            return qs.filter(due_at__lt=self.now)
        horizon = timedelta(days=1) if value == "today" else timedelta(days=7)
        return qs.filter(due_at__gte=self.now, due_at__lt=self.now + horizon)


SORT_CHOICES = [
    ("-severity", "severity, highest first"),
    ("-amount", "amount, largest first"),
    ("amount", "amount, smallest first"),
    ("due", "due, soonest first"),
    ("-opened", "opened, newest first"),
    ("opened", "opened, oldest first"),
    ("-occurrences", "occurrences, most first"),
    ("kind", "kind"),
    ("status", "status"),
]


def filter_choices() -> dict[str, object]:
    """The options the queue's filter form offers (the form is written out in the template)."""
    return {
        "kind": CaseKind.choices,
        "status": STATUS_CHOICES,
        "severity": Severity.choices,
        "entity": list(LegalEntity.objects.order_by("code").values_list("code", flat=True)),
        "due": DUE_CHOICES,
        "sort": SORT_CHOICES,
    }
