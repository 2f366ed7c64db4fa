"""Billing test helpers: metrics and events created through metering's own services."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from billing import services
from billing.models import BillingRun, Contract, Invoice, PricePlan, TaxRate
from billing.periods import parse_period
from core.models import Currency, Customer, LegalEntity
from core.actors import Actor
from metering.services import customer_mapping_create, metric_create, usage_ingest

ACTOR = Actor.system("tests")
_ids = itertools.count(1)


@pytest.fixture
def actor() -> Actor:
    return ACTOR


def currency(code: str, minor: int) -> Currency:
    return Currency.objects.get_or_create(code=code, defaults={"name": code, "minor_units": minor})[
        0
    ]


def entity(code: str, cur: str, minor: int, tz: str, country: str = "US") -> LegalEntity:
    return LegalEntity.objects.create(
        code=code,
        name=code.upper(),
        base_currency=currency(cur, minor),
        country=country,
        timezone=tz,
    )


def customer(
    ent: LegalEntity, code: str, *, jurisdiction: str = "", exempt: bool = False
) -> Customer:
    cust = Customer.objects.create(
        legal_entity=ent,
        code=code,
        name=code.title(),
        country=ent.country,
        tax_jurisdiction=jurisdiction,
        tax_exempt=exempt,
    )
    customer_mapping_create(
        source="app", customer_ref=f"{ent.code}-{code}", customer=cust, actor=ACTOR
    )
    return cust


def metric(code: str, aggregation: str = "count", value_property: str = "", **kw: Any) -> None:
    metric_create(
        code=code,
        name=code,
        aggregation=aggregation,
        value_property=value_property,
        actor=ACTOR,
        **kw,
    )


def send(
    cust: Customer,
    metric_code: str,
    ts: datetime,
    *,
    value: Any = None,
    count: int = 1,
    properties: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """`count` accepted events at `ts` through metering's ingest service."""
    items = []
    for _ in range(count):
        event = {
            "source": "app",
            "event_id": f"e{next(_ids)}",
            "customer_ref": f"{cust.legal_entity.code}-{cust.code}",
            "metric": metric_code,
            "timestamp": ts.isoformat(),
            "properties": properties or {},
        }
        if value is not None:
            event["value"] = str(value)
        items.append((event, event))
    result = usage_ingest(items=items, actor=ACTOR, now=now or ts + timedelta(hours=1))
    assert result.counts["accepted"] == count, result.results[:3]


def plan(
    code: str,
    cur: Currency,
    components: list[dict[str, Any]],
    *,
    effective_from: date = date(2026, 1, 1),
    meta: dict[str, Any] | None = None,
    tax_code: str = "saas",
) -> PricePlan:
    return services.price_plan_create(
        code=code,
        name=code,
        currency=cur,
        actor=ACTOR,
        default_tax_code=tax_code,
        first_version=services.VersionTerms(
            effective_from=effective_from, components=components, component_meta=meta
        ),
    )


def contract(cust: Customer, p: PricePlan, start: date, **kwargs: Any) -> Contract:
    return services.contract_create(
        code=f"c-{cust.code}-{next(_ids)}",
        customer=cust,
        plan=p,
        start_date=start,
        actor=ACTOR,
        **kwargs,
    )


def tax_rate(
    ent: LegalEntity, rate: str, *, jurisdiction: str = "", tax_code: str = "", name: str = "Tax"
) -> TaxRate:
    return TaxRate.objects.create(
        legal_entity=ent,
        jurisdiction=jurisdiction,
        tax_code=tax_code,
        name=name,
        rate=Decimal(rate),
        valid_from=date(2020, 1, 1),
    )


def bill(ent: LegalEntity, month: str) -> BillingRun:
    """Run billing for `month` as the scheduler would, the day after it closed."""
    period = parse_period(month)
    now = datetime.combine(period.end, datetime.min.time(), tzinfo=UTC) + timedelta(days=2)
    run = services.billing_run_request(legal_entity=ent, month=period, actor=ACTOR, now=now)
    return services.billing_run_execute(run_id=run.pk, actor=ACTOR)


def invoice_of(c: Contract, **filters: Any) -> Invoice:
    return Invoice.objects.get(contract=c, kind="invoice", **filters)


def lines(inv: Invoice) -> list[tuple[str, str, Decimal]]:
    return [(ln.kind, ln.component, ln.amount) for ln in inv.lines.order_by("position")]


#: The one per-unit component of the one-draft world: 0.10 per API call.
API_PER_CALL = {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}


def one_draft(events: int = 3) -> Invoice:
    """A US entity, one customer on 0.10 per call, `events` calls in November 2026, billed: its draft."""
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(cust, plan("basic", us.base_currency, [API_PER_CALL]), date(2026, 10, 1))
    send(cust, "api_calls", datetime(2026, 11, 2, tzinfo=UTC), count=events)
    bill(us, "2026-11")
    return invoice_of(c)


@pytest.fixture
def draft() -> Invoice:
    return one_draft()
