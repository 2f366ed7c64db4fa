"""The demo data goes through the real services and reconciles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.demo import DUPLICATES, load_demo_billing
from billing.models import Invoice
from core.demo import load_demo_data
from exceptions.models import ExceptionCase
from metering.models import IngestTally

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_demo_billing_loads_once_and_reconciles() -> None:
    load_demo_data()
    first = load_demo_billing(now=NOW)
    assert first.events_sent == 3003 + DUPLICATES
    tally = IngestTally.objects.get(source="app")
    assert (tally.received, tally.accepted, tally.duplicate, tally.rejected, tally.held) == (
        3003 + DUPLICATES,
        3000,
        DUPLICATES,
        2,
        1,
    )
    assert tally.received == tally.accepted + tally.duplicate + tally.rejected + tally.held
    # One held account, and two rejections with different codes (unknown metric, invalid value).
    assert ExceptionCase.objects.filter(kind="unmapped_customer").count() == 1
    assert ExceptionCase.objects.filter(kind="usage_rejected").count() == 2

    invoices = Invoice.objects.filter(kind="invoice")
    assert invoices.count() == 7  # one per contract for October
    assert all(i.status == "finalized" for i in invoices.filter(legal_entity__code="ll-us"))
    assert all(i.status == "draft" for i in invoices.exclude(legal_entity__code="ll-us"))
    assert all(
        i.total
        == sum(line.amount for line in i.lines.all()) + sum(t.amount for t in i.tax_lines.all())
        for i in invoices
    )

    again = load_demo_billing(now=NOW)
    assert again.events_sent == 0
    assert Invoice.objects.count() == first.invoices
