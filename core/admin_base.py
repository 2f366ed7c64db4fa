"""Admin base classes every app's admin uses: audited plain edits, and read-only screens.

They live in `core` (the audited one records through `core.audit`), so core's
own admin and every app above core can use them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import Model, QuerySet
from django.forms import ModelForm, model_to_dict
from django.http import HttpRequest

from core.actors import Actor
from core.audit import AdminEdit, audit_record


def _snapshot(obj: Model) -> dict[str, Any]:
    return {k: v for k, v in model_to_dict(obj).items() if not isinstance(v, (list, set))}


def _action(obj: Model, edit: AdminEdit) -> str:
    return f"{obj._meta.model_name}.{edit}"


class AuditedModelAdmin(admin.ModelAdmin[Any]):
    """Plain admin edits of master data, each with its audit entry in the same transaction.

    The entry holds the fields that changed (before and after); a delete, from
    the change page or the list's bulk action, records what was deleted.
    """

    def save_model(
        self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool
    ) -> None:
        with transaction.atomic():
            before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change and obj.pk else {}
            super().save_model(request, obj, form, change)
            after = _snapshot(obj)
            changed = sorted(k for k in after if before.get(k) != after[k])
            audit_record(
                actor=Actor.for_user(request.user),
                action=_action(obj, AdminEdit.CHANGE if change else AdminEdit.CREATE),
                obj=obj,
                before={k: before.get(k) for k in changed} if change else None,
                after={k: after[k] for k in changed},
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            _record_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                _record_delete(request, obj)
            super().delete_queryset(request, queryset)


def _record_delete(request: HttpRequest, obj: Model) -> None:
    audit_record(
        actor=Actor.for_user(request.user),
        action=_action(obj, AdminEdit.DELETE),
        obj=obj,
        before=_snapshot(obj),
    )


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """A screen that lists and shows rows that change only through services."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
