"""A small billed world for the ledger and outbox tests: one US entity, VAT 10 %, a plan with a
usage price and a fixed fee billed in advance, invoices finalized through billing's services."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import services as billing
from billing.models import Invoice
from core.models import Customer, LegalEntity
from erp_sync.connectors.memory import MemoryErp, memory_erp
from erp_sync.models import AccountRole, ErpConnection
from erp_sync.services import account_mapping_set, connection_create
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    customer,
    entity,
    metric,
    plan,
    send,
    tax_rate,
)

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)
D = Decimal

#: Our ledger's accounts -> account codes of the test ERP.
MAPPINGS = [
    (AccountRole.RECEIVABLE, "", "1200"),
    (AccountRole.REVENUE, "", "4000"),
    (AccountRole.REVENUE, "api_calls", "4100"),
    (AccountRole.TAX_PAYABLE, "0.1", "2200"),
    (AccountRole.DEFERRED_REVENUE, "", "2400"),
    (AccountRole.CASH_CLEARING, "", "1010"),
]


@dataclass
class World:
    entity: LegalEntity
    customers: list[Customer]
    invoices: list[Invoice]


def billed_world(
    n_customers: int = 1,
    *,
    calls: int = 10,
    finalize: bool = True,
    month: str = "2026-11",
    finalize_at: datetime = NOW,
) -> World:
    """`month` billed (November 2026 unless said): per customer `calls` api calls at 0.10 and a
    100.00 platform fee for the month (first period) plus the next month's in advance
    (deferred); VAT 10 %; finalized at `finalize_at` (the issue date)."""
    from billing.periods import parse_period

    period = parse_period(month)
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    tax_rate(us, "0.10", name="VAT")
    p = plan(
        "basic",
        us.base_currency,
        [
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"},
            {"type": "fixed_fee", "code": "platform", "amount": "100.00"},
        ],
    )
    custs = []
    for i in range(n_customers):
        cust = customer(us, f"cust{i}")
        custs.append(cust)
        contract(cust, p, period.start)
        send(
            cust,
            "api_calls",
            datetime.combine(period.start, datetime.min.time(), tzinfo=UTC) + timedelta(days=9),
            count=calls,
        )
    run = bill(us, month)
    invoices = list(Invoice.objects.filter(billing_run=run).order_by("id"))
    if finalize:
        billing.invoices_finalize(
            invoice_ids=[i.pk for i in invoices], actor=ACTOR, now=finalize_at
        )
        invoices = list(Invoice.objects.filter(billing_run=run).order_by("id"))
    return World(us, custs, invoices)


def memory_connection(
    legal_entity: LegalEntity,
    *,
    name: str = "erp",
    database: str = "test",
    mapped: bool = True,
    **fields: object,
) -> ErpConnection:
    conn = connection_create(
        legal_entity=legal_entity,
        actor=ACTOR,
        name=name,
        kind="memory",
        database=database,
        **fields,
    )
    if mapped:
        for role, key, account in MAPPINGS:
            account_mapping_set(connection=conn, role=role, key=key, account=account, actor=ACTOR)
    return conn


@pytest.fixture(name="erp")
def erp_fixture() -> Iterator[MemoryErp]:
    """The in-memory ERP the `memory_connection`s post to, empty before and after the test."""
    found = memory_erp("test")
    found.reset()
    yield found
    found.reset()
