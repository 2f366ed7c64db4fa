from __future__ import annotations


from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.actors import Actor
from core.admin_base import AuditedModelAdmin
from core.models import ApiKey, Currency, Customer, LegalEntity
from core.services import api_key_revoke


@admin.register(Currency)
class CurrencyAdmin(AuditedModelAdmin):
    list_display = ["code", "name", "minor_units"]


@admin.register(LegalEntity)
class LegalEntityAdmin(AuditedModelAdmin):
    list_display = ["code", "name", "base_currency", "country", "timezone"]
    search_fields = ["code", "name"]


@admin.register(Customer)
class CustomerAdmin(AuditedModelAdmin):
    list_display = ["code", "name", "legal_entity", "country", "tax_exempt"]
    list_filter = ["legal_entity", "tax_exempt"]
    search_fields = ["code", "name", "email"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    """Keys are created with `manage.py create_api_key` (the secret is shown once) and revoked here."""

    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    readonly_fields = [
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]
    exclude = ["key_hash"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            api_key_revoke(
                api_key=key, actor=Actor.for_user(request.user), reason="revoked in admin"
            )
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)
