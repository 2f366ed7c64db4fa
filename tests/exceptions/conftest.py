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


def billed_customer() -> tuple[Any, Any, Any]:
    """(entity, customer, contract): ll-us in UTC, customer acme mapped as app:ll-us-acme, on a
    plan of 1.00 USD per API call since 2026-01-01 (billing's own test helpers)."""
    from datetime import date

    from tests.billing.conftest import contract, customer, entity, metric, plan

    ent = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(ent, "acme")
    con = contract(
        cust,
        plan(
            "per-call",
            ent.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"}],
        ),
        date(2026, 1, 1),
    )
    return ent, cust, con


def finalized_invoice(calls: int = 3) -> Any:
    """`billed_customer`'s November 2026 invoice for `calls` API calls (1.00 each), finalized."""
    from billing import services as billing_services
    from billing.models import Invoice
    from tests.billing.conftest import bill, send

    ent, cust, con = billed_customer()
    send(cust, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), count=calls)
    bill(ent, "2026-11")
    draft = Invoice.objects.get(contract=con, kind="invoice")
    return billing_services.invoice_finalize(invoice=draft, actor=ACTOR)
