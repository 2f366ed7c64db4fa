"""Usage summaries: SQL aggregation of accepted events per (customer, metric, window).

Called through metering.services (usage_summarize_window / usage_summaries_close);
this module holds the query side so the services stay readable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, QuerySet, Subquery, Sum
from django.db.models.fields.json import KT

from core import locks
from metering.models import (
    Aggregation,
    EventSupersession,
    MetricDefinition,
    MetricVersion,
    UsageEvent,
)

QUANT = Decimal("0.000001")

# An ingest transaction holds this advisory lock shared while it inserts events;
# reading the watermark takes it exclusively for an instant, so every event with
# seq <= watermark has committed (a sequence hands out numbers before commit).
EVENT_WATERMARK_LOCK = (
    locks.EVENT_WATERMARK
)  # ingest takes it in metering.reference.lock_for_ingest


def event_insert_lock() -> None:
    """Call inside the transaction that inserts usage events (PostgreSQL only)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", [EVENT_WATERMARK_LOCK])


def event_watermark_hold() -> None:
    """Inside a transaction that inserts an event and recomputes summaries itself (a
    supersession): the watermark lock alone until commit, so no ingest inserts meanwhile and the
    summaries it computes see every event below the watermark (PostgreSQL only). Its own
    current_watermark() calls are granted at once: a backend never waits for its own lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [EVENT_WATERMARK_LOCK])


def current_watermark() -> int:
    """The highest seq below which every event has committed."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SELECT pg_advisory_lock(%s)", [EVENT_WATERMARK_LOCK])
            try:
                cur.execute("SELECT last_value, is_called FROM metering_usageevent_seq_seq")
                last_value, is_called = cur.fetchone()
                return int(last_value) if is_called else 0
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", [EVENT_WATERMARK_LOCK])
        # SQLite serialises writers: the highest committed seq is the watermark.
        cur.execute("SELECT COALESCE(MAX(seq), 0) FROM metering_usageevent")
        return int(cur.fetchone()[0])


def counted_events(events: QuerySet[UsageEvent], *, watermark: int | None) -> QuerySet[UsageEvent]:
    """`events` less the ones superseded as of `watermark` (decision 51): an event whose
    replacement has seq <= watermark is not counted, its replacement is. `watermark=None`: as of
    now (every supersession made). An anti-join on a small table: free while there is none."""
    superseded = EventSupersession.objects.filter(original_seq=OuterRef("seq"))
    if watermark is not None:
        superseded = superseded.filter(replacement_seq__lte=watermark)
    return events.filter(~Exists(superseded))


@dataclass(frozen=True)
class Aggregate:
    customer_id: int
    metric_id: int
    aggregation: str
    quantity: Decimal
    event_count: int
    max_seq: int


def version_in_force(metric: MetricDefinition, at: datetime) -> MetricVersion | None:
    """The version of `metric` in force just before `at` (a window's end, exclusive)."""
    return (
        MetricVersion.objects.filter(metric=metric, effective_from__lt=at)
        .order_by("-effective_from")
        .first()
        or MetricVersion.objects.filter(metric=metric).order_by("effective_from").first()
    )


def aggregate_window(
    *,
    period_start: datetime,
    period_end: datetime,
    watermark: int,
    metrics: list[MetricDefinition],
    customer_ids: list[int] | None,
) -> list[Aggregate]:
    """One GROUP BY per (aggregation, value property) over the window's events."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for metric in metrics:
        version = version_in_force(metric, period_end)
        if version is not None:
            groups[(version.aggregation, version.value_property)].append(metric.pk)
    out: list[Aggregate] = []
    for (aggregation, prop), metric_ids in groups.items():
        base = counted_events(
            UsageEvent.objects.filter(
                metric_id__in=metric_ids,
                timestamp__gte=period_start,
                timestamp__lt=period_end,
                seq__lte=watermark,
            ),
            watermark=watermark,
        )
        if customer_ids is not None:
            base = base.filter(customer_id__in=customer_ids)
        rows = base.values("customer_id", "metric_id").order_by()
        rows = rows.annotate(n=Count("seq"), top=Max("seq"))
        if aggregation == Aggregation.COUNT:
            rows = rows.annotate(q=Count("seq"))
        elif aggregation == Aggregation.SUM:
            rows = rows.annotate(q=Sum("value"))
        elif aggregation == Aggregation.MAX:
            rows = rows.annotate(q=Max("value"))
        elif aggregation == Aggregation.UNIQUE_COUNT:
            rows = rows.annotate(q=Count(KT(f"properties__{prop}"), distinct=True))
        elif aggregation == Aggregation.LATEST:
            latest = (
                base.filter(customer_id=OuterRef("customer_id"), metric_id=OuterRef("metric_id"))
                .order_by("-timestamp", "-seq")
                .values("value")[:1]
            )
            rows = rows.annotate(q=Subquery(latest))
        else:  # pragma: no cover - choices hold the list
            raise ValueError(f"Unknown aggregation {aggregation!r}")
        for row in rows:
            q = row["q"]
            quantity = (Decimal(q) if q is not None else Decimal(0)).quantize(QUANT)
            out.append(
                Aggregate(
                    row["customer_id"],
                    row["metric_id"],
                    aggregation,
                    quantity,
                    row["n"],
                    row["top"],
                )
            )
    return out


def metrics_for(codes: Iterable[str] | None) -> list[MetricDefinition]:
    qs = MetricDefinition.objects.all()
    if codes is not None:
        qs = qs.filter(code__in=list(codes))
    return list(qs)
