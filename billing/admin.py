"""Admin screens for integration admins: plans, contracts, amendments, tax rates.

Anything beyond a plain edit goes through a service (validation, audit entry):
plan versions, contracts and amendments are created by services; documents,
runs and finance events are read-only here (their pages live under /billing/).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from billing import services
from billing.models import (
    BillingRun,
    Contract,
    ContractAmendment,
    EntityBillingSettings,
    FinanceEvent,
    Invoice,
    PricePlan,
    PricePlanVersion,
    TaxRate,
)
from billing.periods import Period
from core.errors import AppError
from core.admin_base import AuditedModelAdmin, ReadOnlyAdmin
from core.actors import Actor

_M = TypeVar("_M", bound=Model)


class _ServiceAdmin(admin.ModelAdmin[_M]):
    """Creates through a service (`create`); existing rows are read-only."""

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: _M | None = None) -> list[str]:
        if obj is None:
            return list(self.readonly_fields)
        return [f.name for f in self.model._meta.fields]

    def create(
        self, request: HttpRequest, obj: _M, form: ModelForm[_M]
    ) -> _M:  # pragma: no cover - abstract
        raise NotImplementedError

    def save_model(self, request: HttpRequest, obj: _M, form: ModelForm[_M], change: bool) -> None:
        if change:
            return
        try:
            created = self.create(request, obj, form)
        except AppError as exc:
            self.message_user(request, f"{exc.message} ({exc.code})", messages.ERROR)
            raise forms.ValidationError(exc.message) from None
        obj.pk = created.pk

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except forms.ValidationError:
            from django.shortcuts import redirect

            return redirect(request.path)


class _PagesAdmin(_ServiceAdmin[_M]):
    """Shows links to the application's form editor and detail page above the JSON fields."""

    change_form_template = "admin/billing/change_form_pages.html"

    def app_pages(self, obj: _M | None) -> list[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: _M | None = None,
    ) -> HttpResponse:
        context["app_pages"] = self.app_pages(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


_C = TypeVar("_C", bound=Model)
_P = TypeVar("_P", bound=Model)


class _HistoryInline(admin.TabularInline[_C, _P]):
    """Versions and amendments are shown, never edited in place: add a new one instead."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: _P | None = None) -> list[str]:
        return [f for f in self.fields or [] if isinstance(f, str)]  # flat lists of names here

    def has_add_permission(self, request: HttpRequest, obj: _P | None = None) -> bool:
        return False


def _plan_pages(plan: PricePlan) -> list[tuple[str, str]]:
    return [
        ("Plan page", reverse("billing:plan", args=[plan.pk])),
        ("New version (form editor)", reverse("billing:plan_version_new", args=[plan.code])),
    ]


def _contract_pages(contract: Contract) -> list[tuple[str, str]]:
    return [
        ("Contract page", reverse("billing:contract", args=[contract.pk])),
        ("Amend (form editor)", reverse("billing:contract_amend", args=[contract.pk])),
    ]


class PricePlanVersionInline(_HistoryInline[PricePlanVersion, PricePlan]):
    model = PricePlanVersion
    fields = ["version", "effective_from", "components", "component_meta", "note"]


@admin.register(PricePlan)
class PricePlanAdmin(_PagesAdmin[PricePlan]):
    list_display = ["code", "name", "currency", "default_tax_code"]
    search_fields = ["code", "name"]
    inlines = [PricePlanVersionInline]

    def app_pages(self, obj: PricePlan | None) -> list[tuple[str, str]]:
        if obj is None:
            return [("New price plan (form editor)", reverse("billing:plan_new"))]
        return _plan_pages(obj)

    def create(self, request: HttpRequest, obj: PricePlan, form: ModelForm[PricePlan]) -> PricePlan:
        return services.price_plan_create(
            code=obj.code,
            name=obj.name,
            currency=obj.currency,
            default_tax_code=obj.default_tax_code,
            actor=Actor.for_user(request.user),
        )


@admin.register(PricePlanVersion)
class PricePlanVersionAdmin(_PagesAdmin[PricePlanVersion]):
    """New prices from a date. `components`: the JSON list of price components (see docs/billing.md)."""

    list_display = ["plan", "version", "effective_from", "note"]
    list_filter = ["plan"]
    exclude = ["version"]

    def app_pages(self, obj: PricePlanVersion | None) -> list[tuple[str, str]]:
        if obj is None:
            return [("Price plans (form editor for a new version)", reverse("billing:plans"))]
        return _plan_pages(obj.plan)

    def create(
        self, request: HttpRequest, obj: PricePlanVersion, form: ModelForm[PricePlanVersion]
    ) -> PricePlanVersion:
        return services.price_plan_version_add(
            plan=obj.plan,
            effective_from=obj.effective_from,
            components=obj.components,
            component_meta=obj.component_meta,
            note=obj.note,
            actor=Actor.for_user(request.user),
        )


class ContractAmendmentInline(_HistoryInline[ContractAmendment, Contract]):
    model = ContractAmendment
    fields = ["effective_from", "plan", "overrides", "reason", "created_at"]


@admin.register(Contract)
class ContractAdmin(_PagesAdmin[Contract]):
    """Contracts are created here; their terms change only by amendments (below)."""

    list_display = ["code", "customer", "legal_entity", "plan", "cadence", "start_date", "end_date"]
    list_filter = ["legal_entity", "plan", "cadence"]
    search_fields = ["code", "customer__code", "customer__name"]
    exclude = ["legal_entity"]
    inlines = [ContractAmendmentInline]

    def app_pages(self, obj: Contract | None) -> list[tuple[str, str]]:
        if obj is None:
            return [("New contract (form editor)", reverse("billing:contract_new"))]
        return _contract_pages(obj)

    def create(self, request: HttpRequest, obj: Contract, form: ModelForm[Contract]) -> Contract:
        return services.contract_create(
            code=obj.code,
            customer=obj.customer,
            plan=obj.plan,
            start_date=obj.start_date,
            end_date=obj.end_date,
            cadence=obj.cadence,
            anchor_day=obj.anchor_day,
            anchor_month=obj.anchor_month,
            overrides=obj.overrides,
            prepaid_balance=obj.prepaid_balance,
            currency=obj.currency,
            actor=Actor.for_user(request.user),
        )


@admin.register(ContractAmendment)
class ContractAmendmentAdmin(_PagesAdmin[ContractAmendment]):
    list_display = ["contract", "effective_from", "plan", "reason"]
    list_filter = ["contract__legal_entity"]

    def app_pages(self, obj: ContractAmendment | None) -> list[tuple[str, str]]:
        if obj is None:
            return [("Contracts (amend in the form editor)", reverse("billing:contracts"))]
        return _contract_pages(obj.contract)

    def create(
        self, request: HttpRequest, obj: ContractAmendment, form: ModelForm[ContractAmendment]
    ) -> ContractAmendment:
        return services.contract_amend(
            contract=obj.contract,
            effective_from=obj.effective_from,
            plan=obj.plan,
            overrides=obj.overrides,
            reason=obj.reason,
            actor=Actor.for_user(request.user),
        )


@admin.register(TaxRate)
class TaxRateAdmin(AuditedModelAdmin):
    list_display = [
        "legal_entity",
        "jurisdiction",
        "tax_code",
        "name",
        "rate",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["legal_entity", "jurisdiction", "tax_code"]


@admin.register(EntityBillingSettings)
class EntityBillingSettingsAdmin(AuditedModelAdmin):
    list_display = [
        "legal_entity",
        "rounding",
        "document_prefix",
        "invoice_prefix",
        "credit_memo_prefix",
    ]


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "kind",
        "status",
        "legal_entity",
        "customer",
        "period_start",
        "total",
    ]
    list_filter = ["kind", "status", "legal_entity"]
    search_fields = ["number", "customer__code"]


@admin.register(BillingRun)
class BillingRunAdmin(ReadOnlyAdmin):
    """Every attempt is a row (decision 52); "Run again" queues a new attempt of each month."""

    list_display = [
        "id",
        "legal_entity",
        "period_start",
        "attempt",
        "status",
        "processed",
        "total",
        "invoices_created",
        "started_at",
        "finished_at",
    ]
    list_filter = ["legal_entity", "status"]
    actions = ["run_again"]

    @admin.action(description="Run the selected months again (a new attempt each)")
    def run_again(self, request: HttpRequest, queryset: QuerySet[BillingRun]) -> None:
        actor = Actor.for_user(request.user)
        months = {(r.legal_entity, r.period_start, r.period_end) for r in queryset}
        for entity, start, end in sorted(months, key=lambda m: (m[0].code, m[1])):
            try:
                run = services.billing_run_start(
                    legal_entity=entity, month=Period(start=start, end=end), actor=actor
                )
            except AppError as exc:
                self.message_user(request, f"{exc.message} ({exc.code})", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{entity.code} {run.label}: attempt {run.attempt} (#{run.pk}) queued.",
                messages.SUCCESS,
            )


@admin.register(FinanceEvent)
class FinanceEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "legal_entity", "created_at"]
    list_filter = ["type"]
