"""Summarized journals: one balanced entry per entity, day and currency, each entry sent once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from erp_sync.connectors.memory import memory_erp
from erp_sync.models import Posting, SummaryMember
from erp_sync.services import ledger_consume, outbox_drain
from erp_sync.services.summaries import summaries_build
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import billed_world, memory_connection

D = Decimal
pytestmark = pytest.mark.django_db


def test_a_day_of_the_ledger_becomes_one_balanced_journal_per_account_sent_once() -> None:
    erp = memory_erp("sum")
    erp.reset()
    world = billed_world(3)
    conn = memory_connection(world.entity, database="sum", mode="summarized_journals")
    ledger_consume(actor=ACTOR)
    assert not Posting.objects.exists()  # no documents for a summarized connection
    # the invoices are dated 2026-12-03
    (posting,) = [
        p for p in summaries_build(actor=ACTOR, now=datetime(2026, 12, 4, 12, tzinfo=UTC))
    ]
    assert posting.external_id.startswith("ll-sum-ll-us-20261203-USD-")
    totals = {ln["account"]: (D(ln["debit"]), D(ln["credit"])) for ln in posting.payload["lines"]}
    assert totals == {
        "receivable": (D("663.30"), D(0)),
        "revenue:api_calls": (D(0), D("3.00")),
        "revenue:platform": (D(0), D("300.00")),
        "deferred_revenue": (D(0), D("300.00")),
        "tax_payable:0.1": (D(0), D("60.30")),
    }
    assert SummaryMember.objects.filter(posting=posting).count() == 3
    assert summaries_build(actor=ACTOR, now=datetime(2026, 12, 4, 13, tzinfo=UTC)) == []
    assert outbox_drain().posted == 1
    rec = erp.records[("journal", posting.external_id)]
    assert rec.total == D("663.30") and {ln.account for ln in rec.lines} == {
        "1200",
        "4100",
        "4000",
        "2400",
        "2200",
    }
    assert conn.mode == "summarized_journals"
    erp.reset()
