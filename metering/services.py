"""Every write of metering: metrics, identity mappings, ingestion, release,
re-submission and usage summaries. Each opens its transaction and writes its
audit entry inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import fastjsonschema
from django.db import transaction
from django.utils import timezone

from core.errors import AppError, Conflict
from exceptions.services import Actor, audit_record
from metering import error_codes
from metering.models import Aggregation, MetricDefinition, MetricVersion, UsageSummary
from metering.summaries import aggregate_window, current_watermark, metrics_for

# --- metric definitions -----------------------------------------------------------


def _metric_version_snapshot(version: MetricVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "effective_from": version.effective_from.isoformat(),
        "name": version.name,
        "unit": version.unit,
        "aggregation": version.aggregation,
        "value_property": version.value_property,
        "properties_schema": version.properties_schema,
    }


def _check_metric_version(*, aggregation: str, value_property: str, properties_schema: dict[str, Any]) -> None:
    if aggregation not in Aggregation.values:
        raise AppError(f"Unknown aggregation {aggregation!r}; use one of {', '.join(Aggregation.values)}.",
                       code=error_codes.METRIC_INVALID)
    if aggregation != Aggregation.COUNT and not value_property:
        raise AppError(f"A {aggregation} metric needs the property that holds its value.",
                       code=error_codes.METRIC_INVALID)
    if not isinstance(properties_schema, dict):
        raise AppError("The properties schema must be a JSON object.", code=error_codes.METRIC_INVALID)
    try:
        fastjsonschema.compile(properties_schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise AppError(f"The properties schema is not a valid JSON Schema: {exc}",
                       code=error_codes.METRIC_INVALID) from exc


def metric_create(
    *,
    code: str,
    name: str,
    aggregation: str,
    actor: Actor,
    unit: str = "",
    value_property: str = "",
    properties_schema: dict[str, Any] | None = None,
    effective_from: datetime | None = None,
) -> MetricVersion:
    """Create a metric with its version 1 (in force from `effective_from`, default: the epoch)."""
    schema = properties_schema or {}
    _check_metric_version(aggregation=aggregation, value_property=value_property, properties_schema=schema)
    with transaction.atomic():
        if MetricDefinition.objects.filter(code=code).exists():
            raise Conflict(f"A metric with code {code!r} exists; add a version instead.",
                           code=error_codes.METRIC_EXISTS)
        metric = MetricDefinition(code=code)
        metric.full_clean()
        metric.save()
        version = MetricVersion(
            metric=metric, version=1,
            effective_from=effective_from or datetime(1970, 1, 1, tzinfo=UTC),
            name=name, unit=unit, aggregation=aggregation, value_property=value_property,
            properties_schema=schema,
        )
        version.full_clean()
        version.save()
        audit_record(actor=actor, action="metric.create", obj=metric, after=_metric_version_snapshot(version))
    return version


def metric_version_add(
    *,
    metric: MetricDefinition,
    effective_from: datetime,
    actor: Actor,
    name: str | None = None,
    unit: str | None = None,
    aggregation: str | None = None,
    value_property: str | None = None,
    properties_schema: dict[str, Any] | None = None,
    reason: str = "",
) -> MetricVersion:
    """A change to a metric: a new version, in force from `effective_from`. Unset fields carry over."""
    with transaction.atomic():
        MetricDefinition.objects.select_for_update().get(pk=metric.pk)
        last = metric.versions.order_by("-version").first()
        assert last is not None
        version = MetricVersion(
            metric=metric,
            version=last.version + 1,
            effective_from=effective_from,
            name=name if name is not None else last.name,
            unit=unit if unit is not None else last.unit,
            aggregation=aggregation if aggregation is not None else last.aggregation,
            value_property=value_property if value_property is not None else last.value_property,
            properties_schema=properties_schema if properties_schema is not None else last.properties_schema,
        )
        _check_metric_version(aggregation=version.aggregation, value_property=version.value_property,
                              properties_schema=version.properties_schema)
        if metric.versions.filter(effective_from=effective_from).exists():
            raise Conflict("Another version of this metric starts at the same time.",
                           code=error_codes.METRIC_INVALID)
        version.full_clean()
        version.save()
        audit_record(actor=actor, action="metric.version_add", obj=metric,
                     before=_metric_version_snapshot(last), after=_metric_version_snapshot(version), reason=reason)
    return version


# --- usage summaries (the interface billing builds on) ------------------------------


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
    aggregates = aggregate_window(period_start=period_start, period_end=period_end, watermark=watermark,
                                  metrics=metrics, customer_ids=customers)
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
            fields = {"aggregation": agg.aggregation, "quantity": agg.quantity,
                      "event_count": agg.event_count, "watermark_seq": watermark, "computed_at": now}
            if summary is None or (summary.closed_at is not None and agg.max_seq > summary.watermark_seq):
                new = UsageSummary(customer_id=agg.customer_id, metric_id=agg.metric_id,
                                   period_start=period_start, period_end=period_end,
                                   revision=0 if summary is None else summary.revision + 1, **fields)
                created.append(new)
                current.append(new)
            elif summary.closed_at is None:
                if (summary.quantity, summary.event_count, summary.aggregation) != (
                    agg.quantity, agg.event_count, agg.aggregation
                ) or summary.watermark_seq != watermark:
                    for k, v in fields.items():
                        setattr(summary, k, v)
                    updated.append(summary)
                current.append(summary)
            else:
                current.append(summary)
        UsageSummary.objects.bulk_create(created, batch_size=2000)
        UsageSummary.objects.bulk_update(
            updated, ["aggregation", "quantity", "event_count", "watermark_seq", "computed_at"], batch_size=2000
        )
        if created or updated:
            audit_record(
                actor=actor, action="usage.summarize", object_type="metering.usagesummary",
                object_id=f"{period_start.isoformat()}/{period_end.isoformat()}",
                object_repr=f"usage {period_start:%Y-%m-%d %H:%M}..{period_end:%Y-%m-%d %H:%M}",
                after={"created": len(created), "updated": len(updated), "watermark_seq": watermark,
                       "revisions": sorted({s.revision for s in created})},
            )
    return current


def usage_summaries_close(*, summary_ids: Iterable[int], actor: Actor) -> int:
    """Freeze summaries (billing finalized invoices on them). Returns how many were closed now."""
    ids = sorted(set(summary_ids))
    if not ids:
        return 0
    with transaction.atomic():
        open_ids = list(
            UsageSummary.objects.select_for_update().filter(pk__in=ids, closed_at__isnull=True)
            .values_list("pk", flat=True)
        )
        if not open_ids:
            return 0
        closed = UsageSummary.objects.filter(pk__in=open_ids).update(closed_at=timezone.now())
        audit_record(actor=actor, action="usage.summaries_close", object_type="metering.usagesummary",
                     object_id=str(open_ids[0]) if len(open_ids) == 1 else f"{open_ids[0]}..{open_ids[-1]}",
                     after={"closed_ids": open_ids})
    return closed

