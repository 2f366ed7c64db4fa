"""The ledger writer: finance events -> balanced entries, revenue schedules and postings, once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing import services as billing
from billing.models import FinanceEvent, Invoice
from core.errors import AppError
from erp_sync.models import (
    DocumentType,
    JournalEntry,
    JournalLine,
    Posting,
    RevenueSchedule,
    ScheduleStatus,
)
from erp_sync.services import ledger_consume, ledger_replay_from, revenue_recognize_due
from erp_sync.services.ledger import EntrySpec, LineSpec, entry_write, rate_key
from exceptions.models import AuditEntry
from tests.billing.conftest import ACTOR
from tests.conftest import requires_postgres
from tests.erp_sync.world import NOW, billed_world, memory_connection

D = Decimal
pytestmark = pytest.mark.django_db


def lines_of(entry: JournalEntry) -> list[tuple[str, Decimal, Decimal]]:
    return [(ln.account, ln.debit, ln.credit) for ln in entry.lines.order_by("position")]


def test_an_invoice_books_receivable_revenue_per_metric_tax_per_rate_and_defers_the_advance_fee() -> (
    None
):
    world = billed_world()
    conn = memory_connection(world.entity)
    result = ledger_consume(actor=ACTOR)
    assert result.events == 1 and result.entries == 1
    entry = JournalEntry.objects.get()
    inv = world.invoices[0]
    assert entry.key == f"invoice.finalized:{inv.pk}" and entry.source_document_id == inv.pk
    assert lines_of(entry) == [
        ("receivable", D("221.10"), D(0)),
        ("revenue:api_calls", D(0), D("1.00")),
        ("revenue:platform", D(0), D("100.00")),  # November's own fee: earned
        ("deferred_revenue", D(0), D("100.00")),  # December's, billed in advance
        ("tax_payable:0.1", D(0), D("20.10")),
    ]
    # every line traces back to its invoice line
    assert [ln.source_line_id for ln in entry.lines.order_by("position")][1:4] == [
        ln.pk for ln in inv.lines.order_by("position")
    ]
    schedule = RevenueSchedule.objects.get()
    assert (schedule.amount, schedule.recognize_on, schedule.revenue_account) == (
        D("100.00"),
        date(2026, 12, 31),
        "revenue:platform",
    )
    posting = Posting.objects.get()
    assert (posting.connection, posting.document_type, posting.external_id, posting.amount) == (
        conn,
        DocumentType.INVOICE,
        f"ll-inv-{inv.pk}",
        D("221.10"),
    )
    assert posting.status == "pending" and posting.entry == entry
    assert AuditEntry.objects.filter(action="journal.write", object_id=str(entry.pk)).count() == 1


def test_replaying_every_event_from_zero_writes_no_second_entry_or_posting() -> None:
    world = billed_world(2)
    memory_connection(world.entity)
    inv = world.invoices[0]
    billing.invoice_mark_paid(invoice=inv, actor=ACTOR)
    billing.invoice_void(invoice=world.invoices[1], reason="wrong customer", actor=ACTOR)
    first = ledger_consume(actor=ACTOR)
    assert first.entries == 4
    revenue_recognize_due(actor=ACTOR, today=date(2027, 1, 1))
    counts = (JournalEntry.objects.count(), JournalLine.objects.count(), Posting.objects.count())
    ledger_replay_from(event_id=0, actor=ACTOR)
    again = ledger_consume(actor=ACTOR)
    assert again.events == FinanceEvent.objects.count() and again.entries == 0
    assert revenue_recognize_due(actor=ACTOR, today=date(2027, 1, 1)) == 0
    assert (
        JournalEntry.objects.count(),
        JournalLine.objects.count(),
        Posting.objects.count(),
    ) == counts


def test_payment_books_cash_clearing_against_receivable() -> None:
    world = billed_world()
    memory_connection(world.entity)
    billing.invoice_mark_paid(invoice=world.invoices[0], actor=ACTOR)
    ledger_consume(actor=ACTOR)
    payment = JournalEntry.objects.get(kind="payment")
    assert lines_of(payment) == [
        ("cash_clearing", D("221.10"), D(0)),
        ("receivable", D(0), D("221.10")),
    ]
    posting = Posting.objects.get(entry=payment)
    assert posting.document_type == DocumentType.JOURNAL
    assert [ln["customer_id"] for ln in posting.payload["lines"]] == [None, world.customers[0].pk]


def test_partial_payments_book_one_entry_each_dated_when_received() -> None:
    """221.10 paid as 100.00 then 121.10: two cash entries, their sum the invoice's receivable."""
    world = billed_world()
    memory_connection(world.entity)
    inv = world.invoices[0]
    billing.invoice_payment_record(
        invoice=inv,
        amount=D("100.00"),
        received_on=date(2026, 12, 5),
        method="bank_transfer",
        actor=ACTOR,
    )
    billing.invoice_payment_record(
        invoice=inv,
        amount=None,
        received_on=date(2026, 12, 9),
        method="bank_transfer",
        actor=ACTOR,
    )
    ledger_consume(actor=ACTOR)
    payments = list(JournalEntry.objects.filter(kind="payment").order_by("date"))
    assert [(p.date, lines_of(p)) for p in payments] == [
        (
            date(2026, 12, 5),
            [("cash_clearing", D("100.00"), D(0)), ("receivable", D(0), D("100.00"))],
        ),
        (
            date(2026, 12, 9),
            [("cash_clearing", D("121.10"), D(0)), ("receivable", D(0), D("121.10"))],
        ),
    ]
    counts = JournalEntry.objects.count()
    ledger_replay_from(event_id=0, actor=ACTOR)
    ledger_consume(actor=ACTOR)
    assert JournalEntry.objects.count() == counts


def test_void_writes_the_reversal_entry_linked_to_the_original_and_a_cancellation_posting() -> None:
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    inv = world.invoices[0]
    billing.invoice_void(invoice=inv, reason="duplicate", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    original = JournalEntry.objects.get(kind="invoice")
    reversal = JournalEntry.objects.get(kind="void")
    assert reversal.reversal_of == original
    assert lines_of(reversal) == [(a, c, d) for a, d, c in lines_of(original)]
    cancel = Posting.objects.get(document_type=DocumentType.INVOICE_CANCEL)
    assert cancel.depends_on == Posting.objects.get(document_type=DocumentType.INVOICE)
    assert cancel.payload["target_external_id"] == f"ll-inv-{inv.pk}"
    # the fee billed in advance will not be recognised any more
    assert RevenueSchedule.objects.get().status == ScheduleStatus.CANCELLED
    assert revenue_recognize_due(actor=ACTOR, today=date(2027, 1, 1)) == 0


def test_credit_memo_mirrors_the_invoice_and_credits_the_deferred_fee_in_its_schedule() -> None:
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    inv = world.invoices[0]
    memo = billing.credit_memo_issue(invoice=inv, reason="goodwill", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    entry = JournalEntry.objects.get(kind="credit_memo")
    assert lines_of(entry) == [
        ("receivable", D(0), D("221.10")),
        ("revenue:api_calls", D("1.00"), D(0)),
        ("revenue:platform", D("100.00"), D(0)),
        ("deferred_revenue", D("100.00"), D(0)),
        ("tax_payable:0.1", D("20.10"), D(0)),
    ]
    posting = Posting.objects.get(document_type=DocumentType.CREDIT_MEMO)
    assert posting.external_id == f"ll-cn-{memo.pk}" and posting.amount == D("221.10")
    assert posting.payload["credits_external_id"] == f"ll-inv-{inv.pk}"
    assert posting.depends_on == Posting.objects.get(document_type=DocumentType.INVOICE)
    assert [ln["amount"] for ln in posting.payload["lines"]] == ["1.00", "100.00", "100.00"]
    # December's fee was credited while still deferred: recognition nets to zero
    revenue_recognize_due(actor=ACTOR, today=date(2027, 1, 1))
    recognized = JournalLine.objects.filter(entry__kind="revenue_recognition")
    net = sum((ln.debit - ln.credit for ln in recognized if ln.account == "deferred_revenue"), D(0))
    assert net == D(0) and recognized.count() == 4


def test_revenue_schedule_recognises_the_advance_fee_at_the_end_of_its_period_with_its_own_entry() -> (
    None
):
    world = billed_world()
    conn = memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    assert revenue_recognize_due(actor=ACTOR, today=date(2026, 12, 30)) == 0
    assert revenue_recognize_due(actor=ACTOR, today=date(2026, 12, 31)) == 1
    entry = JournalEntry.objects.get(kind="revenue_recognition")
    assert entry.date == date(2026, 12, 31)
    assert lines_of(entry) == [
        ("deferred_revenue", D("100.00"), D(0)),
        ("revenue:platform", D(0), D("100.00")),
    ]
    assert Posting.objects.get(entry=entry, connection=conn).document_type == DocumentType.JOURNAL
    assert RevenueSchedule.objects.get().recognition_entry == entry


def test_the_service_refuses_an_unbalanced_entry_with_a_clear_message(entity_us) -> None:
    spec = EntrySpec(
        key="t:1",
        kind="payment",
        legal_entity_id=entity_us.pk,
        currency_id="USD",
        date=date(2026, 12, 1),
        description="bad",
        lines=[LineSpec("cash_clearing", D("10.00")), LineSpec("receivable", D("-9.99"))],
    )
    with pytest.raises(AppError) as err:
        with transaction.atomic():
            entry_write(spec=spec)
    assert err.value.code == "erp_unbalanced_entry"
    assert "debits 10.00 <> credits 9.99" in err.value.message


def test_an_event_that_cannot_be_booked_opens_a_case_and_stops_the_cursor_there() -> None:
    from exceptions.models import ExceptionCase

    world = billed_world()
    FinanceEvent.objects.create(
        type="invoice.paid",
        legal_entity=world.entity,
        payload={
            "schema": 1,
            "document": {
                "id": 999999,
                "number": "X",
                "currency": "USD",
                "total": "1",
                "paid_at": NOW.isoformat(),
            },
        },
    )
    result = ledger_consume(actor=ACTOR)
    assert result.entries == 1 and result.stopped_at is not None
    case = ExceptionCase.objects.get(kind="ledger_event_failed")
    assert "journal entry is missing" in case.error_message
    assert ledger_consume(actor=ACTOR).stopped_at == result.stopped_at  # never skipped


def test_rate_key() -> None:
    assert (rate_key("0.190000"), rate_key("0.0725"), rate_key("0")) == ("0.19", "0.0725", "0")


# --------------------------------------------------------------------------- the database refuses


def _entry(entity_us, key: str = "db:1") -> JournalEntry:
    return JournalEntry.objects.create(
        key=key,
        kind="payment",
        legal_entity=entity_us,
        currency_id="USD",
        date=date(2026, 12, 1),
        description="t",
    )


def _line(
    entry: JournalEntry, pos: int, debit: str, credit: str, account: str = "x"
) -> JournalLine:
    return JournalLine.objects.create(
        entry=entry,
        position=pos,
        account=account,
        debit=D(debit),
        credit=D(credit),
        currency_id="USD",
        legal_entity_id=entry.legal_entity_id,
    )


@requires_postgres
def test_postgres_refuses_an_unbalanced_entry_at_commit(entity_us) -> None:
    with pytest.raises(IntegrityError, match="does not balance in USD"):
        with transaction.atomic():
            entry = _entry(entity_us)
            _line(entry, 1, "10.00", "0")
            _line(entry, 2, "0", "9.99")
            with transaction.get_connection().cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")


@requires_postgres
def test_postgres_refuses_an_entry_without_lines(entity_us) -> None:
    with pytest.raises(IntegrityError, match="has no lines"):
        with transaction.atomic():
            _entry(entity_us)
            with transaction.get_connection().cursor() as cur:
                cur.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _raw(sql: str) -> None:
    with transaction.get_connection().cursor() as cur:
        cur.execute(sql)


@requires_postgres
def test_postgres_accepts_a_balanced_entry_and_refuses_update_and_delete(entity_us) -> None:
    with transaction.atomic():
        entry = _entry(entity_us)
        _line(entry, 1, "10.00", "0")
        _line(entry, 2, "0", "10.00")
        with transaction.get_connection().cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for statement in (
        lambda: JournalLine.objects.filter(entry=entry).update(debit=D("11.00")),
        lambda: JournalLine.objects.filter(entry=entry).delete(),
        lambda: JournalEntry.objects.filter(pk=entry.pk).update(description="edited"),
        lambda: _raw(f"DELETE FROM erp_sync_journalentry WHERE id = {entry.pk}"),
    ):
        with pytest.raises(IntegrityError, match="append-only"):
            with transaction.atomic():
                statement()


def test_database_refuses_a_line_with_both_or_neither_side(entity_us) -> None:
    for debit, credit in (("1.00", "1.00"), ("0", "0"), ("-1.00", "0")):
        with pytest.raises(IntegrityError):
            with transaction.atomic():
                _line(_entry(entity_us, key=f"db:{debit}:{credit}"), 1, debit, credit)


def test_database_refuses_a_second_entry_for_the_same_source_key(entity_us) -> None:
    with transaction.atomic():
        e = _entry(entity_us, "same")
        _line(e, 1, "1", "0")
        _line(e, 2, "0", "1")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            _entry(entity_us, "same")


def test_database_refuses_a_second_posting_of_one_external_id_per_connection() -> None:
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    p = Posting.objects.get()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Posting.objects.create(
                connection=p.connection,
                document_type=p.document_type,
                external_id=p.external_id,
                legal_entity=p.legal_entity,
                amount=p.amount,
                currency=p.currency,
                payload={},
            )
    assert Invoice.objects.count() == 1
