"""Exception-queue fixtures: cases made by the apps' own services (ingest, billing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from core.actors import Actor
from core.models import Customer
from exceptions.models import ExceptionCase
from exceptions.workbench.services import Caller
from metering.services import customer_mapping_create, metric_create, usage_ingest

ACTOR = Actor.system("tests")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def ingest(*events: dict[str, Any]) -> Any:
    return usage_ingest(items=[(e, e) for e in events], actor=ACTOR)


@pytest.fixture
def api_calls(db: None) -> None:
    metric_create(code="api_calls", name="API calls", aggregation="count", actor=ACTOR)


@pytest.fixture
def event() -> Callable[..., dict[str, Any]]:
    def make(event_id: str, **kw: Any) -> dict[str, Any]:
        ev = {
            "event_id": event_id,
            "source": "app",
            "customer_ref": "acct-1",
            "metric": "api_calls",
            "timestamp": iso(datetime.now(UTC) - timedelta(hours=1)),
        }
        ev.update(kw)
        return ev

    return make


@pytest.fixture
def rejected_case(
    api_calls: None, event: Callable[..., dict[str, Any]], customer_acme: Customer
) -> ExceptionCase:
    """One event of a mapped account sent with a metric that does not exist: usage_rejected."""
    customer_mapping_create(
        source="app", customer_ref="acct-1", customer=customer_acme, actor=ACTOR
    )
    result = ingest(event("bad-1", metric="api_cals"))
    assert result.counts["rejected"] == 1
    return ExceptionCase.objects.get(kind="usage_rejected")


@pytest.fixture
def unmapped_case(
    api_calls: None, event: Callable[..., dict[str, Any]], customer_acme: Customer
) -> ExceptionCase:
    result = ingest(event("h-1", customer_ref="acct-new"), event("h-2", customer_ref="acct-new"))
    assert result.counts["held"] == 2
    return ExceptionCase.objects.get(kind="unmapped_customer")


@pytest.fixture
def as_caller() -> Callable[[User], Caller]:
    return Caller.for_user
