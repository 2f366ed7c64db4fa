from __future__ import annotations


from django.contrib import admin

# The admin bases moved to core (the audited one records through core.audit); billing's and
# metering's admins still import them from here until they import core.admin_base themselves.
from core.admin_base import AuditedModelAdmin as AuditedModelAdmin
from core.admin_base import ReadOnlyAdmin as ReadOnlyAdmin
from exceptions.models import AuditEntry, ExceptionCase


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
