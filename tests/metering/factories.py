"""Test helpers for metering: metrics, mappings and events written straight to the tables."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from core.models import Customer
from core.actors import Actor
from metering.models import EventKey, MetricDefinition, MetricVersion, UsageEvent
from metering.services import metric_create

TEST_ACTOR = Actor.system("tests")


def make_metric(
    code: str, aggregation: str = "count", value_property: str = "", **kw: Any
) -> MetricVersion:
    return metric_create(
        code=code,
        name=code.replace("_", " "),
        aggregation=aggregation,
        value_property=value_property,
        actor=TEST_ACTOR,
        **kw,
    )


_counter = iter(range(1, 10**9))


def put_event(
    *,
    customer: Customer,
    metric: MetricDefinition,
    at: datetime,
    value: Decimal | str | None = None,
    properties: dict[str, Any] | None = None,
    source: str = "app",
) -> UsageEvent:
    """An accepted event, as the ingest path would store it (key row included)."""
    version = metric.versions.order_by("-effective_from").first()
    assert version is not None, f"{metric.code} has no version"
    event_id = f"t-{next(_counter)}"
    EventKey.objects.create(
        key=EventKey.key_of(source, event_id), content_hash="x" * 32, received_at=at
    )
    return UsageEvent.objects.create(
        source=source,
        event_id=event_id,
        customer_ref=customer.code,
        customer=customer,
        metric=metric,
        metric_version=version,
        timestamp=at,
        value=Decimal(value) if value is not None else None,
        properties=properties or {},
        received_at=at,
    )
