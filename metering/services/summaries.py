"""Usage summaries, the interface billing builds on: summarize a window, close summaries, the
scheduled refresh."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from core.actors import Actor
from core.errors import AppError
from exceptions.services import audit_record
from metering.audit_actions import MeteringAction
from metering.models import (
    UsageEvent,
    UsageSummary,
)
from metering.summaries import aggregate_window, current_watermark, metrics_for


def usage_summarize_window(
    *,
    period_start: datetime,
    period_end: datetime,
    customer_ids: Iterable[int] | None = None,
    metric_codes: Iterable[str] | None = None,
    actor: Actor,
) -> list[UsageSummary]:
    """Bring the open latest revision of every (customer, metric) with usage in the window up to date.

    A closed latest revision with accepted events past its watermark gets
    revision + 1 (open), a full recomputation of the window. Returns the current
    (latest) summaries of the pairs with usage.
    """
    if period_end <= period_start:
        raise AppError("The window must end after it starts.", code="invalid_window")
    customers = list(customer_ids) if customer_ids is not None else None
    metrics = metrics_for(metric_codes)
    watermark = current_watermark()
    aggregates = aggregate_window(
        period_start=period_start,
        period_end=period_end,
        watermark=watermark,
        metrics=metrics,
        customer_ids=customers,
    )
    now = timezone.now()
    created: list[UsageSummary] = []
    updated: list[UsageSummary] = []
    current: list[UsageSummary] = []
    with transaction.atomic():
        existing = UsageSummary.objects.select_for_update().filter(
            period_start=period_start, period_end=period_end, metric__in=metrics
        )
        if customers is not None:
            existing = existing.filter(customer_id__in=customers)
        latest: dict[tuple[int, int], UsageSummary] = {}
        for s in existing.order_by("revision"):
            latest[(s.customer_id, s.metric_id)] = s
        for agg in aggregates:
            summary = latest.get((agg.customer_id, agg.metric_id))
            fields = {
                "aggregation": agg.aggregation,
                "quantity": agg.quantity,
                "event_count": agg.event_count,
                "watermark_seq": watermark,
                "computed_at": now,
            }
            if summary is None or (
                summary.closed_at is not None and agg.max_seq > summary.watermark_seq
            ):
                new = UsageSummary(
                    customer_id=agg.customer_id,
                    metric_id=agg.metric_id,
                    period_start=period_start,
                    period_end=period_end,
                    revision=0 if summary is None else summary.revision + 1,
                    **fields,
                )
                created.append(new)
                current.append(new)
            elif summary.closed_at is None:
                if (summary.quantity, summary.event_count, summary.aggregation) != (
                    agg.quantity,
                    agg.event_count,
                    agg.aggregation,
                ) or summary.watermark_seq != watermark:
                    for k, v in fields.items():
                        setattr(summary, k, v)
                    updated.append(summary)
                current.append(summary)
            else:
                current.append(summary)
        # An open summary whose every event was superseded away (its replacement in another
        # window, decision 51) has no aggregate any more: it counts nothing now.
        seen = {(agg.customer_id, agg.metric_id) for agg in aggregates}
        for pair, summary in latest.items():
            if pair in seen or summary.closed_at is not None:
                continue
            if summary.event_count or summary.quantity:
                summary.quantity, summary.event_count = Decimal(0), 0
                summary.watermark_seq, summary.computed_at = watermark, now
                updated.append(summary)
            current.append(summary)
        UsageSummary.objects.bulk_create(created, batch_size=2000)
        UsageSummary.objects.bulk_update(
            updated,
            ["aggregation", "quantity", "event_count", "watermark_seq", "computed_at"],
            batch_size=2000,
        )
        if created or updated:
            audit_record(
                actor=actor,
                action=MeteringAction.USAGE_SUMMARIZE,
                object_type="metering.usagesummary",
                object_id=f"{period_start:%Y%m%dT%H%M%S}-{period_end:%Y%m%dT%H%M%S}",
                object_repr=f"usage {period_start:%Y-%m-%d %H:%M}..{period_end:%Y-%m-%d %H:%M}",
                after={
                    "created": len(created),
                    "updated": len(updated),
                    "watermark_seq": watermark,
                    "revisions": sorted({s.revision for s in created}),
                },
            )
    return current


def usage_summaries_close(*, summary_ids: Iterable[int], actor: Actor) -> int:
    """Freeze summaries (billing finalized invoices on them). Returns how many were closed now."""
    ids = sorted(set(summary_ids))
    if not ids:
        return 0
    with transaction.atomic():
        open_ids = list(
            UsageSummary.objects.select_for_update()
            .filter(pk__in=ids, closed_at__isnull=True)
            .values_list("pk", flat=True)
        )
        if not open_ids:
            return 0
        closed = UsageSummary.objects.filter(pk__in=open_ids).update(closed_at=timezone.now())
        audit_record(
            actor=actor,
            action=MeteringAction.USAGE_SUMMARIES_CLOSE,
            object_type="metering.usagesummary",
            object_id=str(open_ids[0]) if len(open_ids) == 1 else f"{open_ids[0]}..{open_ids[-1]}",
            after={"closed_ids": open_ids},
        )
    return closed


# --- scheduled refresh -------------------------------------------------------------------------

LATE_USAGE_LOOKBACK_DAYS = (
    40  # closed windows this recent are checked for late events (EVENT_MAX_AGE + margin)
)


def usage_summaries_refresh(*, actor: Actor, now: datetime | None = None) -> int:
    """Bring open summaries up to date, and open revision+1 of recently closed windows with late events.

    Incremental: a window is recomputed only if an event arrived past its
    lowest watermark. Returns how many windows were recomputed. Safe to run twice.
    """
    now = now or timezone.now()
    windows: dict[tuple[datetime, datetime], int] = {}
    open_rows = (
        UsageSummary.objects.filter(closed_at__isnull=True)
        .values("period_start", "period_end")
        .annotate(low=Min("watermark_seq"))
        .order_by()
    )
    for row in open_rows:
        windows[(row["period_start"], row["period_end"])] = row["low"]
    closed_rows = (
        UsageSummary.objects.filter(
            closed_at__isnull=False, period_end__gte=now - timedelta(days=LATE_USAGE_LOOKBACK_DAYS)
        )
        .values("period_start", "period_end")
        .annotate(low=Min("watermark_seq"))
        .order_by()
    )
    for row in closed_rows:
        key = (row["period_start"], row["period_end"])
        windows[key] = min(windows.get(key, row["low"]), row["low"])
    done = 0
    for (start, end), low in sorted(windows.items()):
        if UsageEvent.objects.filter(timestamp__gte=start, timestamp__lt=end, seq__gt=low).exists():
            usage_summarize_window(period_start=start, period_end=end, actor=actor)
            done += 1
    return done
