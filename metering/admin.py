"""Admin screens of metering. Metrics and mappings change only through the services
(versioned, audited, releasing held events); event tables are read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from core.errors import AppError
from core.admin_base import ReadOnlyAdmin
from core.actors import Actor
from metering.models import (
    Aggregation,
    CustomerMapping,
    DuplicateConflict,
    HeldEvent,
    ImportJob,
    IngestTally,
    MetricDefinition,
    MetricVersion,
    RejectedEvent,
    UsageSummary,
)
from metering.services import customer_mapping_create, metric_create, metric_version_add


class MetricForm(forms.ModelForm[MetricDefinition]):
    """The metric's code plus the fields of the version the save creates."""

    name = forms.CharField(max_length=200)
    unit = forms.CharField(max_length=50, required=False)
    aggregation = forms.ChoiceField(choices=Aggregation.choices)
    value_property = forms.CharField(
        max_length=100, required=False, help_text="Needed for sum, max, latest and unique_count."
    )
    properties_schema = forms.JSONField(
        required=False, initial=dict, help_text="JSON Schema of the properties."
    )
    accepts_negative = forms.BooleanField(
        required=False, help_text="Events may carry negative values (refunds, credits)."
    )
    effective_from = forms.DateTimeField(
        required=False,
        help_text="When this version takes effect (empty: now; first version: always).",
    )
    reason = forms.CharField(required=False, help_text="Why the change (kept in the audit trail).")

    class Meta:
        model = MetricDefinition
        fields = ["code"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["code"].disabled = True
            last = self.instance.versions.order_by("-version").first()
            if last is not None:
                for f in (
                    "name",
                    "unit",
                    "aggregation",
                    "value_property",
                    "properties_schema",
                    "accepts_negative",
                ):
                    self.initial[f] = getattr(last, f)


# A version is never edited: the inline shows every field read-only.
_VERSION_FIELDS = (
    "version",
    "effective_from",
    "name",
    "unit",
    "aggregation",
    "value_property",
    "properties_schema",
    "accepts_negative",
)


class MetricVersionInline(admin.TabularInline[MetricVersion, MetricDefinition]):
    model = MetricVersion
    extra = 0
    can_delete = False
    fields = readonly_fields = _VERSION_FIELDS

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MetricDefinition)
class MetricDefinitionAdmin(admin.ModelAdmin[MetricDefinition]):
    form = MetricForm
    list_display = ["code", "created_at"]
    search_fields = ["code"]
    inlines = [MetricVersionInline]

    def save_model(
        self, request: HttpRequest, obj: MetricDefinition, form: MetricForm, change: bool
    ) -> None:
        d = form.cleaned_data
        actor = Actor.for_user(request.user)
        try:
            if not change:
                version = metric_create(
                    code=d["code"],
                    name=d["name"],
                    unit=d["unit"] or "",
                    aggregation=d["aggregation"],
                    value_property=d["value_property"] or "",
                    properties_schema=d["properties_schema"] or {},
                    accepts_negative=bool(d.get("accepts_negative")),
                    actor=actor,
                )
                obj.pk = version.metric_id
            else:
                metric_version_add(
                    metric=obj,
                    effective_from=d["effective_from"] or timezone.now(),
                    actor=actor,
                    name=d["name"],
                    unit=d["unit"] or "",
                    aggregation=d["aggregation"],
                    value_property=d["value_property"] or "",
                    properties_schema=d["properties_schema"] or {},
                    accepts_negative=bool(d.get("accepts_negative")),
                    reason=d["reason"] or "",
                )
        except AppError as exc:
            messages.error(request, exc.message)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Versions are read-only here: the service wrote the new one.
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CustomerMapping)
class CustomerMappingAdmin(admin.ModelAdmin[CustomerMapping]):
    list_display = ["source", "customer_ref", "customer", "created_at"]
    search_fields = ["source", "customer_ref", "customer__code", "customer__name"]
    autocomplete_fields = ["customer"]

    def save_model(
        self, request: HttpRequest, obj: CustomerMapping, form: Any, change: bool
    ) -> None:
        mapping = customer_mapping_create(
            source=obj.source,
            customer_ref=obj.customer_ref,
            customer=obj.customer,
            actor=Actor.for_user(request.user),
        )
        obj.pk = mapping.pk

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RejectedEvent)
class RejectedEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "received_at", "source", "event_id", "code", "status"]
    list_filter = ["code", "status", "source"]
    search_fields = ["event_id", "source"]


@admin.register(HeldEvent)
class HeldEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "source",
        "customer_ref",
        "event_id",
        "metric",
        "timestamp",
        "released_at",
    ]
    list_filter = ["source"]
    search_fields = ["customer_ref", "event_id"]


@admin.register(UsageSummary)
class UsageSummaryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "customer",
        "metric",
        "period_start",
        "period_end",
        "revision",
        "quantity",
        "event_count",
        "closed_at",
    ]
    list_filter = ["metric"]


@admin.register(IngestTally)
class IngestTallyAdmin(ReadOnlyAdmin):
    list_display = ["day", "source", "accepted", "duplicate", "rejected", "held", "released"]


@admin.register(DuplicateConflict)
class DuplicateConflictAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "event_id", "received_at", "case"]


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "filename", "status", "rows", "accepted", "rejected", "created_at"]
