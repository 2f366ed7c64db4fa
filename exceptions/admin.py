from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

# The audited admin base moved to core (it records through core.audit); billing's admin
# still imports it from here until it imports core.audited_admin itself.
from core.audited_admin import AuditedModelAdmin as AuditedModelAdmin
from exceptions.models import AuditEntry, ExceptionCase


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
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
    """Until the queue pages exist, cases are listed here; they change only through services."""

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
