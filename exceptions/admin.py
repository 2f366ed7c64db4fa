from __future__ import annotations


from django.contrib import admin

# The admin bases moved to core (the audited one records through core.audit); billing's and
# metering's admins still import them from here until they import core.admin_base themselves.
from core.admin_base import AuditedModelAdmin as AuditedModelAdmin
from core.admin_base import ReadOnlyAdmin as ReadOnlyAdmin
from exceptions.models import (
    AuditEntry,
    CaseComment,
    CaseProposal,
    ExceptionCase,
    ExceptionPolicy,
)


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
