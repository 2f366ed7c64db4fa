"""End to end: events through metering -> summaries -> billing run -> drafts -> finalize, to the cent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing import services
from billing.models import FinanceEvent, Invoice
from exceptions.models import AuditEntry
from tests.billing.conftest import (
    ACTOR, bill, contract, currency, customer, entity, invoice_of, lines, metric, plan, send, tax_rate,
)

D = Decimal
pytestmark = pytest.mark.django_db

API = {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.002", "free_units": "1000"}
FEE = {"type": "fixed_fee", "code": "platform", "amount": "99.00"}


def test_usage_and_fees_in_advance_with_tax_to_the_cent() -> None:
    us = entity("ll-us", "USD", 2, "America/New_York")
    metric("api_calls")
    acme = customer(us, "acme", jurisdiction="US-CA")
    tax_rate(us, "0.0725", jurisdiction="US-CA", name="CA sales tax")
    c = contract(acme, plan("basic", us.base_currency, [API, FEE]), date(2026, 11, 1))
    send(acme, "api_calls", datetime(2026, 11, 10, 12, tzinfo=UTC), count=1500)

    run = bill(us, "2026-11")

    assert run.status == "done" and run.invoices_created == 1
    inv = invoice_of(c)
    # 1500 calls - 1000 free = 500 x 0.002 = 1.00; platform fee Nov (first period) + Dec in advance
    assert lines(inv) == [("usage", "api", D("1.00")), ("fixed_fee", "platform", D("99.00")),
                          ("fixed_fee", "platform", D("99.00"))]
    assert [(ln.service_start, ln.service_end) for ln in inv.lines.order_by("position")][1:] == [
        (date(2026, 11, 1), date(2026, 12, 1)), (date(2026, 12, 1), date(2027, 1, 1))]
    assert inv.subtotal == D("199.00")
    # 199.00 x 7.25 % = 14.4275 -> 14.43
    assert inv.tax_total == D("14.43") and inv.total == D("213.43")
    usage_line = inv.lines.get(kind="usage")
    assert usage_line.usage_summary is not None and usage_line.usage_summary.quantity == D("1500")
    assert usage_line.quantity == D("500") and usage_line.unit_price == D("0.002")

    final = services.invoice_finalize(invoice=inv, actor=ACTOR)
    assert final.number == f"INV-{final.issue_date.year}-000001" and final.status == "finalized"
    usage_line.usage_summary.refresh_from_db()
    assert usage_line.usage_summary.closed_at is not None
    event = FinanceEvent.objects.get(type="invoice.finalized")
    assert event.payload["document"]["number"] == final.number
    assert event.payload["document"]["total"] == "213.43"
    assert [ln["amount"] for ln in event.payload["lines"]] == ["1.00", "99.00", "99.00"]
    assert AuditEntry.objects.filter(action="invoice.finalize", object_id=str(inv.pk)).count() == 1


def test_rerun_never_creates_a_second_invoice() -> None:
    us = entity("ll-us", "USD", 2, "America/New_York")
    metric("api_calls")
    acme = customer(us, "acme")
    c = contract(acme, plan("basic", us.base_currency, [API]), date(2026, 10, 1))
    send(acme, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=1200)
    bill(us, "2026-11")
    again = bill(us, "2026-11")
    assert again.status == "done"
    assert Invoice.objects.filter(contract=c).count() == 1
    assert invoice_of(c).subtotal == D("0.40")

