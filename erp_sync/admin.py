"""Admin screens for integration admins: ERP connections, account and party mappings; the ledger
and the outbox read-only (their pages live under /erp/), with a replay action on postings.

Connections are plain audited edits (the password is never a field: only the NAME of its
environment variable). Account mappings go through `account_mapping_set`, which also releases
the postings held for a missing mapping and resolves its case.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.template.response import TemplateResponse

from core.actors import Actor
from core.errors import AppError
from erp_sync.models import (
    AccountMapping,
    ErpConnection,
    JournalEntry,
    JournalLine,
    PartyMapping,
    Posting,
    PostingAttempt,
    RevenueSchedule,
)
from erp_sync.services import (
    account_mapping_delete,
    account_mapping_set,
    posting_replay,
    postings_backfill,
)
from exceptions.admin import AuditedModelAdmin, ReadOnlyAdmin


class AccountMappingInline(admin.TabularInline):
    model = AccountMapping
    fields = ["role", "key", "account"]
    readonly_fields = ["role", "key", "account"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # added on the account mapping page (through the service)


@admin.register(ErpConnection)
class ErpConnectionAdmin(AuditedModelAdmin):
    list_display = ["name", "legal_entity", "kind", "mode", "enabled", "base_url", "max_attempts"]
    list_filter = ["kind", "mode", "enabled", "legal_entity"]
    inlines = [AccountMappingInline]
    fieldsets = [
        (None, {"fields": ["legal_entity", "name", "kind", "enabled", "mode", "credit_memo_mode"]}),
        (
            "Where",
            {"fields": ["base_url", "database", "company", "login", "password_env"]},
        ),
        (
            "Retries",
            {
                "fields": [
                    "max_attempts",
                    "backoff_base_seconds",
                    "backoff_cap_seconds",
                    "lease_seconds",
                    "timeout_seconds",
                    "external_id_prefix",
                    "options",
                ]
            },
        ),
    ]

    actions = ["backfill_postings"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # disable it instead: postings refer to it

    @admin.action(description="Backfill postings from a date (documents booked before)")
    def backfill_postings(
        self, request: HttpRequest, queryset: QuerySet[ErpConnection]
    ) -> TemplateResponse | None:
        """A form (first entry date, reason), then `postings_backfill` per selected connection."""
        form = BackfillForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            actor = Actor.for_user(request.user)
            for conn in queryset:
                try:
                    result = postings_backfill(
                        connection=conn,
                        since=form.cleaned_data["since"],
                        actor=actor,
                        reason=form.cleaned_data["reason"],
                    )
                except AppError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                    continue
                self.message_user(
                    request,
                    f"{conn.name}: {len(result.created)} posting(s) written, {result.existing} "
                    f"already there, {len(result.skipped)} skipped"
                    + (f" ({'; '.join(result.skipped[:3])})" if result.skipped else ""),
                    messages.SUCCESS,
                )
            return None
        return TemplateResponse(
            request,
            "erp_sync/admin_backfill.html",
            {
                **self.admin_site.each_context(request),
                "title": "Backfill postings",
                "connections": queryset,
                "form": form,
                "opts": self.model._meta,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            },
        )


class BackfillForm(forms.Form):
    since = forms.DateField(
        label="First entry date",
        help_text="Journal entries dated on or after this day get their postings (YYYY-MM-DD).",
    )
    reason = forms.CharField(label="Reason", max_length=500, help_text="Kept in the audit entry.")


@admin.register(AccountMapping)
class AccountMappingAdmin(admin.ModelAdmin):
    list_display = ["connection", "role", "key", "account", "updated_at"]
    list_filter = ["connection", "role"]
    search_fields = ["key", "account"]

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        try:
            saved = account_mapping_set(
                connection=obj.connection,
                role=obj.role,
                key=obj.key,
                account=obj.account,
                actor=Actor.for_user(request.user),
            )
        except AppError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        account_mapping_delete(mapping=obj, actor=Actor.for_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for mapping in queryset:
                account_mapping_delete(mapping=mapping, actor=Actor.for_user(request.user))


@admin.register(PartyMapping)
class PartyMappingAdmin(AuditedModelAdmin):
    list_display = ["connection", "customer", "erp_party_id", "created_by_connector", "created_at"]
    list_filter = ["connection", "created_by_connector"]
    search_fields = ["customer__code", "erp_party_id"]


#: The columns of each inline, shown read-only (the rows are append-only).
JOURNAL_LINE_FIELDS = (
    "position",
    "account",
    "debit",
    "credit",
    "currency",
    "customer",
    "source_line",
)


class JournalLineInline(admin.TabularInline):
    model = JournalLine
    fields = JOURNAL_LINE_FIELDS
    readonly_fields = JOURNAL_LINE_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JournalEntry)
class JournalEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "key", "kind", "legal_entity", "date", "currency", "reversal_of"]
    list_filter = ["kind", "legal_entity"]
    search_fields = ["key", "description"]
    inlines = [JournalLineInline]


@admin.register(RevenueSchedule)
class RevenueScheduleAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "legal_entity",
        "customer",
        "revenue_account",
        "amount",
        "recognize_on",
        "status",
    ]
    list_filter = ["status", "legal_entity"]


POSTING_ATTEMPT_FIELDS = (
    "number",
    "outcome",
    "error_class",
    "error_message",
    "http_status",
    "latency_ms",
    "started_at",
    "worker",
)


class PostingAttemptInline(admin.TabularInline):
    model = PostingAttempt
    fields = POSTING_ATTEMPT_FIELDS
    readonly_fields = POSTING_ATTEMPT_FIELDS
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = [
        "external_id",
        "document_type",
        "connection",
        "status",
        "attempts",
        "amount",
        "currency",
        "updated_at",
    ]
    list_filter = ["status", "document_type", "connection"]
    search_fields = ["external_id", "erp_number"]
    inlines = [PostingAttemptInline]
    actions = ["replay"]

    @admin.action(description="Send again (failed, dead or held postings)")
    def replay(self, request: HttpRequest, queryset: QuerySet[Posting]) -> None:
        done = 0
        for posting in queryset:
            try:
                posting_replay(
                    posting=posting,
                    actor=Actor.for_user(request.user),
                    reason=f"replayed from the admin by {request.user}",
                )
                done += 1
            except AppError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"{done} posting(s) will be sent again.")
