"""Reads of metering, including the ones billing uses for lineage and percentage pricing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KT

from core.errors import NotFound
from metering.models import (
    CustomerMapping,
    DuplicateConflict,
    EventKey,
    EventSupersession,
    HeldEvent,
    ImportJob,
    IngestTally,
    MetricDefinition,
    RejectedEvent,
    UsageEvent,
    UsageSummary,
)
from metering.summaries import counted_events


def summary_events(*, summary: UsageSummary) -> QuerySet[UsageEvent]:
    """The events a summary covers, in seq order (the caller paginates): those of its window up
    to its watermark, less the ones superseded as of that watermark (decision 51)."""
    return counted_events(
        UsageEvent.objects.filter(
            customer_id=summary.customer_id,
            metric_id=summary.metric_id,
            timestamp__gte=summary.period_start,
            timestamp__lt=summary.period_end,
            seq__lte=summary.watermark_seq,
        ),
        watermark=summary.watermark_seq,
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
    """The summaries (every revision) that include `event`: those whose watermark reached it,
    and, if it was superseded, did not reach its replacement yet."""
    summaries = UsageSummary.objects.filter(
        customer_id=event.customer_id,
        metric_id=event.metric_id,
        period_start__lte=event.timestamp,
        period_end__gt=event.timestamp,
        watermark_seq__gte=event.seq,
    )
    replaced_at = (
        EventSupersession.objects.filter(original_seq=event.seq)
        .values_list("replacement_seq", flat=True)
        .first()
    )
    if replaced_at is not None:
        summaries = summaries.filter(watermark_seq__lt=replaced_at)
    return summaries.order_by("period_start", "revision")


def counted_usage_events() -> QuerySet[UsageEvent]:
    """Accepted events less every superseded one: usage as it stands now (decision 51)."""
    return counted_events(UsageEvent.objects.all(), watermark=None)


def supersession_of(*, seq: int) -> EventSupersession | None:
    """The supersession of event `seq` (None if it stands)."""
    return EventSupersession.objects.filter(original_seq=seq).first()


def event_supersessions(*, seq: int) -> QuerySet[EventSupersession]:
    """The supersessions event `seq` is the original or the replacement of."""
    return EventSupersession.objects.filter(Q(original_seq=seq) | Q(replacement_seq=seq))


def case_conflicts(*, case_id: int) -> QuerySet[DuplicateConflict]:
    """The conflicting redeliveries kept with a duplicate_conflict case, newest first, each with
    its supersession if finance took it."""
    return (
        DuplicateConflict.objects.filter(case_id=case_id)
        .select_related("supersession")
        .order_by("-id")
    )


def duplicate_conflict(*, pk: int) -> DuplicateConflict:
    conflict = DuplicateConflict.objects.filter(pk=pk).first()
    if conflict is None:
        raise NotFound(f"There is no conflicting redelivery #{pk}.", code="not_found")
    return conflict


def event_fields(event: UsageEvent) -> dict[str, Any]:
    """An event's fields as the audit trail and the case page show them."""
    return {
        "seq": event.seq,
        "source": event.source,
        "event_id": event.event_id,
        "customer_ref": event.customer_ref,
        "customer_id": event.customer_id,
        "metric_id": event.metric_id,
        "timestamp": event.timestamp.isoformat(),
        "value": None if event.value is None else str(event.value),
        "properties": event.properties,
    }


def current_event(*, source: str, event_id: str) -> UsageEvent | None:
    """The accepted event that stands for (source, event_id): the latest replacement if finance
    took a new version, else the one first stored (None: held or never accepted).

    Events have no (source, event_id) index (it would slow ingest down); the original is looked
    for in the months intake could have taken it into, by its key's received_at, then anywhere."""
    latest = (
        EventSupersession.objects.filter(source=source, event_id=event_id)
        .order_by("-replacement_seq")
        .first()
    )
    if latest is not None:
        return UsageEvent.objects.filter(seq=latest.replacement_seq).first()
    key = EventKey.objects.filter(key=EventKey.key_of(source, event_id)).first()
    if key is None:
        return None
    events = UsageEvent.objects.filter(source=source, event_id=event_id).order_by("seq")
    conf = settings.LEDGERLINE
    near = events.filter(
        timestamp__gte=key.received_at - timedelta(days=conf["EVENT_MAX_AGE_DAYS"] + 1),
        timestamp__lte=key.received_at
        + timedelta(seconds=conf["EVENT_MAX_FUTURE_SECONDS"], days=1),
    ).first()
    return near or events.first()


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
