"""Reconciliation against the in-memory ERP: to the cent when all is well, a case per difference."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from billing import services as billing
from erp_sync.connectors.base import ErpRecord, ReadBackLine
from erp_sync.models import Posting
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


def _account_rows(run, name: str = "erp") -> dict[str, dict[str, str]]:
    return {r["account"]: r for r in run.totals["accounts"][name]}


def test_an_account_total_that_differs_in_the_erp_opens_a_case_per_account(erp) -> None:
    world = _posted_world()
    ext = f"ll-inv-{world.invoices[2].pk}"
    rec = erp.records[("invoice", ext)]
    # the ERP moved the usage revenue (1.00 on 4100) to the default revenue account: the
    # document's total and tax are as posted, only the accounts differ
    lines = tuple(
        dataclasses.replace(ln, account="4000") if ln.account == "4100" else ln for ln in rec.lines
    )
    erp.records[("invoice", ext)] = dataclasses.replace(rec, lines=lines)

    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)

    assert not run.matched
    rows = _account_rows(run)
    assert (rows["4100"]["ledger"], rows["4100"]["erp"], rows["4100"]["difference"]) == (
        "-1",
        "0",
        "1",
    )
    assert rows["4000"]["difference"] == "-1"
    cases = ExceptionCase.objects.filter(kind="reconciliation_mismatch").order_by("id")
    assert {c.details["account"] for c in cases} == {"4000", "4100"}
    assert {c.details["what"] for c in cases} == {"account total differs"}
    (c4100,) = [c for c in cases if c.details["account"] == "4100"]
    assert c4100.details["ours"]["ledger_posted"] == "-1" and c4100.details["theirs"]["erp"] == "0"
    # a second run updates the same cases, it does not open more
    reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert ExceptionCase.objects.filter(kind="reconciliation_mismatch").count() == 2


def test_documents_not_posted_yet_are_no_account_difference(erp) -> None:
    world = billed_world(2)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    erp.fail_next("permanent", "Period closed.")  # the first invoice fails, the second posts
    outbox_drain()
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    rows = _account_rows(run)
    assert (rows["1200"]["ledger"], rows["1200"]["unposted"], rows["1200"]["erp"]) == (
        "442.2",
        "221.1",
        "221.1",
    )
    assert all(r["difference"] == "0" for r in rows.values())
    assert not [m for m in run.mismatches if m["what"] == "account total differs"]


def test_a_void_with_defer_by_journal_reverses_the_deferral_in_the_erp(erp) -> None:
    world = billed_world(2)
    memory_connection(world.entity, options={"defer_by_journal": True})
    billing.invoice_void(invoice=world.invoices[1], reason="duplicate", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    voided = world.invoices[1].pk
    journals = {
        (p.entry.kind if p.entry else ""): p
        for p in Posting.objects.filter(source_document_id=voided, document_type="journal")
    }
    assert set(journals) == {"invoice", "void"}
    assert {p.status for p in journals.values()} == {"posted"}
    net: dict[str, Decimal] = {}
    for p in journals.values():
        for ln in erp.records[("journal", p.external_id)].lines:
            net[ln.account] = net.get(ln.account, Decimal(0)) + ln.debit - ln.credit
    assert net == {"2400": Decimal(0), "4000": Decimal(0)}  # the deferral is undone
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert run.matched, run.mismatches
    assert _account_rows(run)["2400"]["erp"] == "-100"  # the other invoice's advance fee


def test_contra_revenue_credit_memo_with_defer_by_journal_lands_where_the_ledger_is(erp) -> None:
    """A contra-revenue credit memo of an invoice whose advance fee is still deferred: the
    recognised lines go to the credit-memo account, the deferred fee back to deferred revenue
    (nothing of it was ever revenue, so nothing of it is contra revenue). On an ERP that takes
    revenue accounts only on document lines (defer_by_journal), that line carries the revenue
    account and the credit memo's journal moves it to deferred revenue."""
    from erp_sync.models import AccountRole
    from erp_sync.services import account_mapping_set

    world = billed_world(1)
    conn = memory_connection(
        world.entity, credit_memo_mode="contra_revenue", options={"defer_by_journal": True}
    )
    account_mapping_set(
        connection=conn, role=AccountRole.CREDIT_MEMO, key="", account="4900", actor=ACTOR
    )
    billing.credit_memo_issue(invoice=world.invoices[0], reason="goodwill", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    assert outbox_drain().posted == 4  # invoice and credit memo, each with its journal
    credit = Posting.objects.get(document_type="credit_memo")
    doc = erp.records[("credit_memo", credit.external_id)]
    assert sorted((ln.account, ln.debit, ln.credit) for ln in doc.lines) == [
        ("1200", Decimal(0), Decimal("221.10")),
        ("2200", Decimal("20.10"), Decimal(0)),
        ("4000", Decimal("100.00"), Decimal(0)),  # the deferred fee, moved by the journal
        ("4900", Decimal("1.00"), Decimal(0)),  # usage: contra revenue
        ("4900", Decimal("100.00"), Decimal(0)),  # this month's fee: contra revenue
    ]
    journal = Posting.objects.get(entry=credit.entry, document_type="journal")
    assert sorted(
        (ln.account, ln.debit, ln.credit)
        for ln in erp.records[("journal", journal.external_id)].lines
    ) == [("2400", Decimal("100.00"), Decimal(0)), ("4000", Decimal(0), Decimal("100.00"))]
    run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    assert run.matched, run.mismatches
    rows = _account_rows(run)
    assert (rows["4900"]["ledger"], rows["4900"]["erp"]) == ("101", "101")
    assert (rows["2400"]["ledger"], rows["2400"]["erp"]) == ("0", "0")  # deferred, then credited


def _summarized_world():
    from datetime import UTC, datetime

    from erp_sync.connectors.memory import memory_erp
    from erp_sync.services.summaries import summaries_build

    sums = memory_erp("sum")
    sums.reset()
    world = billed_world(3)
    conn = memory_connection(world.entity, name="gl", database="sum", mode="summarized_journals")
    billing.invoice_mark_paid(invoice=world.invoices[0], actor=ACTOR)
    ledger_consume(actor=ACTOR)
    summaries_build(actor=ACTOR, now=datetime(2026, 12, 28, 12, tzinfo=UTC))
    outbox_drain()
    assert set(Posting.objects.filter(connection=conn).values_list("status", flat=True)) == {
        "posted"
    }
    return world, conn, sums


def test_a_summarized_journal_connection_reconciles_by_external_id_and_account() -> None:
    world, conn, sums = _summarized_world()
    try:
        run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
        assert run.matched, run.mismatches
        rows = _account_rows(run, "gl")
        # three invoices and a payment: receivable 663.30 - 221.10
        assert (rows["1200"]["ledger"], rows["1200"]["erp"]) == ("442.2", "442.2")
        assert (rows["1010"]["ledger"], rows["1010"]["erp"]) == ("221.1", "221.1")
        assert all(r["difference"] == "0" for r in rows.values())
        (usd,) = run.totals["currencies"]
        column = usd["connections"]["gl"]
        assert column["mode"] == "summarized_journals" and column["erp_minus_posted"] == "0"

        # the ERP's copy of a summary changed, and a move under our prefix we never sent
        (posting,) = Posting.objects.filter(connection=conn)[:1]
        rec = sums.records[("journal", posting.external_id)]
        sums.records[("journal", posting.external_id)] = dataclasses.replace(
            rec,
            total=rec.total + Decimal("1.00"),
            lines=(
                *rec.lines,
                ReadBackLine("1010", Decimal("1.00"), Decimal(0)),
                ReadBackLine("4000", Decimal(0), Decimal("1.00")),
            ),
        )
        sums.records[("journal", "ll-sum-stray")] = dataclasses.replace(
            rec, external_id="ll-sum-stray", erp_id="stray"
        )
        run = reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
        whats = {(m["what"], m.get("external_id") or m.get("account")) for m in run.mismatches}
        assert whats >= {
            ("summary journal differs", posting.external_id),
            ("account total differs", "1010"),
            ("account total differs", "4000"),
            ("document in the ERP we have no record of", "ll-sum-stray"),
        }
    finally:
        sums.reset()
