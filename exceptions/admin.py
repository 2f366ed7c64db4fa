from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import ModelForm, model_to_dict
from django.http import HttpRequest

from exceptions.models import (
    AuditEntry,
    CaseComment,
    CaseProposal,
    ExceptionCase,
    ExceptionPolicy,
)
from core.actors import Actor
from exceptions.services import audit_record


def _snapshot(obj: Model) -> dict[str, Any]:
    return {k: v for k, v in model_to_dict(obj).items() if not isinstance(v, (list, set))}


class AuditedModelAdmin(admin.ModelAdmin):
    """Plain admin edits of master data, each with its audit entry in the same transaction.

    The entry holds the fields that changed (before and after); a delete, from
    the change page or the list's bulk action, records what was deleted.
    """

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        with transaction.atomic():
            before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change and obj.pk else {}
            super().save_model(request, obj, form, change)
            after = _snapshot(obj)
            changed = sorted(k for k in after if before.get(k) != after[k])
            audit_record(
                actor=Actor.for_user(request.user),
                action=f"{obj._meta.model_name}.{'change' if change else 'create'}",
                obj=obj,
                before={k: before.get(k) for k in changed} if change else None,
                after={k: after[k] for k in changed},
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            audit_record(
                actor=Actor.for_user(request.user),
                action=f"{obj._meta.model_name}.delete",
                obj=obj,
                before=_snapshot(obj),
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                audit_record(
                    actor=Actor.for_user(request.user),
                    action=f"{obj._meta.model_name}.delete",
                    obj=obj,
                    before=_snapshot(obj),
                )
            super().delete_queryset(request, queryset)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "at", "actor_label", "action", "object_type", "object_id", "reason"]
    list_filter = ["actor_kind", "object_type"]
    search_fields = ["action", "object_id", "actor_label"]


@admin.register(ExceptionCase)
class ExceptionCaseAdmin(ReadOnlyAdmin):
    """Read-only here: finance works cases in the queue (/exceptions/), through its services."""

    list_display = [
        "id",
        "kind",
        "title",
        "severity",
        "status",
        "occurrence_count",
        "amount_at_stake",
        "currency",
        "legal_entity",
        "customer",
        "last_seen_at",
    ]
    list_filter = ["status", "kind", "severity", "legal_entity"]
    search_fields = ["title", "fingerprint", "error_message", "source_id"]


@admin.register(ExceptionPolicy)
class ExceptionPolicyAdmin(ReadOnlyAdmin):
    """Read-only here: an approver edits policies on /exceptions/policies/ (audited)."""

    list_display = [
        "kind",
        "high_amount",
        "critical_amount",
        "high_after_hours",
        "critical_after_hours",
        "due_hours",
        "auto_retry",
        "four_eyes_above",
        "updated_at",
    ]


@admin.register(CaseProposal)
class CaseProposalAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "case",
        "kind",
        "target",
        "status",
        "revision",
        "proposed_by_label",
        "approved_by_label",
        "proposed_at",
    ]
    list_filter = ["status", "kind", "target"]


@admin.register(CaseComment)
class CaseCommentAdmin(ReadOnlyAdmin):
    list_display = ["id", "case", "author_label", "at"]
