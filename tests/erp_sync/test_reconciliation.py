"""Reconciliation against the in-memory ERP: to the cent when all is well, a case per difference."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from billing import services as billing
from erp_sync.connectors.base import ErpRecord
from erp_sync.services import ledger_consume, outbox_drain
from erp_sync.services.reconciliation import reconcile
from exceptions.models import ExceptionCase
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import erp_fixture  # noqa: F401 - the `erp` fixture
from tests.erp_sync.world import billed_world, memory_connection

pytestmark = pytest.mark.django_db
DEC = (date(2026, 12, 1), date(2027, 1, 1))


def _posted_world():
    world = billed_world(3)
    memory_connection(world.entity)
    billing.credit_memo_issue(invoice=world.invoices[0], reason="goodwill", actor=ACTOR)
    billing.invoice_void(invoice=world.invoices[1], reason="duplicate", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    return world


def test_all_posted_reconciles_to_the_cent_in_every_column(erp) -> None:
    world = _posted_world()
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert run.matched, run.mismatches
    (usd,) = run.totals["currencies"]
    # three invoices of 221.10, one voided, one credited in full: 221.10 remain
    assert usd["invoiced"] == "221.1" and usd["ledger_receivable"] == "221.1"
    erp_col = usd["connections"]["erp"]
    assert (erp_col["posted"], erp_col["erp"], erp_col["erp_minus_posted"]) == (
        "221.1",
        "221.1",
        "0",
    )
    assert all(row["difference"] == "0" for row in run.totals["accounts"]["erp"])
    assert not ExceptionCase.objects.filter(kind="reconciliation_mismatch").exists()


def test_a_document_that_differs_in_the_erp_opens_a_case_with_both_sides(erp) -> None:
    world = _posted_world()
    ext = f"ll-inv-{world.invoices[2].pk}"
    rec = erp.records[("invoice", ext)]
    erp.records[("invoice", ext)] = dataclasses.replace(rec, total=rec.total - Decimal("0.01"))
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert not run.matched
    case = ExceptionCase.objects.get(kind="reconciliation_mismatch")
    assert case.details["external_id"] == ext
    assert (case.details["ours"]["total"], case.details["theirs"]["total"]) == ("221.1", "221.09")
    assert run.totals["currencies"][0]["connections"]["erp"]["erp_minus_posted"] == "-0.01"


def test_a_document_in_the_erp_with_our_external_id_we_have_no_record_of_opens_a_case(erp) -> None:
    world = _posted_world()
    erp.records[("invoice", "ll-inv-99999")] = ErpRecord(
        external_id="ll-inv-99999",
        kind="invoice",
        erp_id="x",
        erp_number="X-1",
        state="posted",
        posted=True,
        currency="USD",
        total=Decimal("5.00"),
        tax_total=Decimal(0),
        date=date(2026, 12, 5),
    )
    reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    case = ExceptionCase.objects.get(kind="reconciliation_mismatch")
    assert case.details["what"] == "document in the ERP we have no record of"
    assert case.details["external_id"] == "ll-inv-99999"


def test_accounts_reconcile_when_the_erp_defers_by_journal(erp) -> None:
    world = billed_world(2)
    memory_connection(world.entity, options={"defer_by_journal": True})
    ledger_consume(actor=ACTOR)
    outbox_drain()
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert run.matched, run.mismatches
    rows = {r["account"]: r for r in run.totals["accounts"]["erp"]}
    assert (rows["2400"]["ledger"], rows["2400"]["erp"], rows["2400"]["difference"]) == (
        "-200",
        "-200",
        "0",
    )
    assert all(r["difference"] == "0" for r in rows.values())
