"""Reads of metering, including the ones billing uses for lineage and percentage pricing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation

from django.db.models import QuerySet
from django.db.models.fields.json import KT

from core.errors import NotFound
from metering.models import (
    CustomerMapping,
    HeldEvent,
    ImportJob,
    IngestTally,
    MetricDefinition,
    RejectedEvent,
    UsageEvent,
    UsageSummary,
)


def summary_events(*, summary: UsageSummary) -> QuerySet[UsageEvent]:
    """The events a summary covers, in seq order (the caller paginates)."""
    return UsageEvent.objects.filter(
        customer_id=summary.customer_id,
        metric_id=summary.metric_id,
        timestamp__gte=summary.period_start,
        timestamp__lt=summary.period_end,
        seq__lte=summary.watermark_seq,
    ).order_by("seq")


def summary_event_values(*, summary: UsageSummary, property_name: str) -> Iterator[Decimal]:
    """Per-event amounts of `property_name` (or the event value for "value"), in seq order.

    Events without the property, or with one that is not a number, are skipped.
    """
    events = summary_events(summary=summary)
    if property_name == "value":
        for value in events.values_list("value", flat=True).iterator(chunk_size=5000):
            if value is not None:
                yield Decimal(value)
        return
    for raw in (
        events.annotate(_v=KT(f"properties__{property_name}"))
        .values_list("_v", flat=True)
        .iterator(chunk_size=5000)
    ):
        if raw is None:
            continue
        try:
            amount = Decimal(str(raw))
        except InvalidOperation:
            continue
        if amount.is_finite():
            yield amount


def summaries_for_event(*, event: UsageEvent) -> QuerySet[UsageSummary]:
    """The summaries (every revision) that include `event`."""
    return UsageSummary.objects.filter(
        customer_id=event.customer_id,
        metric_id=event.metric_id,
        period_start__lte=event.timestamp,
        period_end__gt=event.timestamp,
        watermark_seq__gte=event.seq,
    ).order_by("period_start", "revision")


def metrics() -> QuerySet[MetricDefinition]:
    return MetricDefinition.objects.prefetch_related("versions").order_by("code")


def metric_by_code(*, code: str) -> MetricDefinition:
    metric = MetricDefinition.objects.filter(code=code).first()
    if metric is None:
        raise NotFound(f"There is no metric with code {code!r}.", code="not_found")
    return metric


def mappings() -> QuerySet[CustomerMapping]:
    return CustomerMapping.objects.select_related("customer").order_by("source", "customer_ref")


def rejected_events() -> QuerySet[RejectedEvent]:
    return RejectedEvent.objects.order_by("-id")


def rejected_event(*, pk: int) -> RejectedEvent:
    rejected = RejectedEvent.objects.filter(pk=pk).first()
    if rejected is None:
        raise NotFound(f"There is no rejected event #{pk}.", code="not_found")
    return rejected


def held_events(
    *, source: str | None = None, customer_ref: str | None = None
) -> QuerySet[HeldEvent]:
    qs = HeldEvent.objects.filter(released_at__isnull=True)
    if source:
        qs = qs.filter(source=source)
    if customer_ref:
        qs = qs.filter(customer_ref=customer_ref)
    return qs.order_by("id")


def control_totals(
    *, date_from: date | None = None, date_to: date | None = None, source: str | None = None
) -> QuerySet[IngestTally]:
    qs = IngestTally.objects.all()
    if date_from:
        qs = qs.filter(day__gte=date_from)
    if date_to:
        qs = qs.filter(day__lte=date_to)
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by("-day", "source")


def import_jobs() -> QuerySet[ImportJob]:
    return ImportJob.objects.order_by("-created_at")
