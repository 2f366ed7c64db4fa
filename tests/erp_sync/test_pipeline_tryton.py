"""The whole pipe against the real Tryton server: billing -> ledger -> outbox -> Tryton, and
back (reconciliation). Every document is counted in Tryton itself, per external id."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from billing import services as billing
from erp_sync.models import Posting
from erp_sync.services import (
    ledger_consume,
    ledger_replay_from,
    outbox_drain,
    revenue_recognize_due,
)
from erp_sync.services.reconciliation import reconcile
from erp_sync.tryton_rpc import TrytonClient
from tests.billing.conftest import ACTOR
from tests.conftest import requires_postgres
from tests.erp_sync.world import billed_world

from .conftest import last_month_closed_in_tryton, tryton_period_reopen

pytestmark = [pytest.mark.tryton, pytest.mark.django_db]
D = Decimal


def this_world(n: int):
    """Last month billed and finalized now: Tryton numbers invoices in date order and dates the
    credit notes its wizard makes today, so the documents must not be dated after today."""
    today = timezone.now().date()
    last = today.replace(day=1) - timedelta(days=1)
    return billed_world(n, month=f"{last:%Y-%m}", finalize_at=timezone.now())


def month_of_today() -> tuple[date, date]:
    start = timezone.now().date().replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def in_tryton(admin: TrytonClient, prefix: str) -> dict[str, int]:
    """External id -> how many invoices and moves Tryton holds under it (all companies)."""
    counts: dict[str, int] = {}
    for model in ("account.invoice", "account.move"):
        rows = admin.call(
            f"model.{model}.search_read",
            [("ledgerline_external_id", "like", f"{prefix}-%")],
            0,
            None,
            None,
            ["ledgerline_external_id"],
            context={"company_filter": "all"},
        )
        for row in rows:
            counts[row["ledgerline_external_id"]] = counts.get(row["ledgerline_external_id"], 0) + 1
    return counts


def test_invoice_credit_memo_void_payment_and_recognition_reach_tryton_exactly_once(
    tryton_conn, admin: TrytonClient
) -> None:
    world = this_world(4)
    conn = tryton_conn(world)
    inv0, inv1, inv2, _ = world.invoices
    billing.credit_memo_issue(invoice=inv0, reason="goodwill", actor=ACTOR)
    billing.invoice_void(invoice=inv1, reason="duplicate", actor=ACTOR)
    billing.invoice_mark_paid(invoice=inv2, actor=ACTOR)
    ledger_consume(actor=ACTOR)
    revenue_recognize_due(actor=ACTOR, today=month_of_today()[1] - timedelta(days=1))
    outbox_drain(worker="e2e")
    statuses = dict(Posting.objects.values_list("external_id", "status"))
    assert set(statuses.values()) == {"posted"}, Posting.objects.exclude(
        status="posted"
    ).values_list("external_id", "last_error")
    counts = in_tryton(admin, conn.external_id_prefix)
    # every posting is in Tryton once (the void's credit note carries the cancellation's id)
    assert counts == {ext: 1 for ext in statuses}
    # the voided invoice is cancelled in Tryton, the credited one has its credit note
    cancelled = admin.call(
        "model.account.invoice.search_read",
        [("ledgerline_external_id", "=", f"{conn.external_id_prefix}-inv-{inv1.pk}")],
        0,
        None,
        None,
        ["state"],
        context={"company_filter": "all"},
    )
    assert [r["state"] for r in cancelled] == ["cancelled"]

    # replaying every finance event from zero writes no second entry, posting or document
    postings = Posting.objects.count()
    ledger_replay_from(event_id=0, actor=ACTOR)
    assert ledger_consume(actor=ACTOR).entries == 0
    assert outbox_drain().claimed == 0 and Posting.objects.count() == postings
    assert in_tryton(admin, conn.external_id_prefix) == counts

    # and what Tryton holds reconciles with billing and the ledger, to the cent
    start, end = month_of_today()
    run = reconcile(legal_entity=world.entity, start=start, end=end, actor=ACTOR)
    assert run.matched, run.mismatches
    (usd,) = run.totals["currencies"]
    assert (
        usd["invoiced"]
        == usd["ledger_receivable"]
        == usd["connections"][conn.name]["erp"]
        == "442.2"
    )


def test_a_closed_period_fails_with_trytons_message_and_replay_after_reopening_posts(
    tryton_conn, admin: TrytonClient
) -> None:
    from exceptions.models import ExceptionCase

    world = this_world(1)
    conn = tryton_conn(world)
    ledger_consume(actor=ACTOR)
    company = admin.call(
        "model.company.company.search", [("party.name", "=", conn.company)], 0, None, None
    )[0]
    (period,) = admin.call(
        "model.account.period.search",
        [
            ("company", "=", company),
            ("start_date", "<=", timezone.now().date()),
            ("end_date", ">=", timezone.now().date()),
            ("type", "=", "standard"),
        ],
        0,
        None,
        None,
    )
    admin.call("model.account.period.close", [period])
    try:
        outbox_drain()
        invoice = Posting.objects.get(document_type="invoice")
        assert invoice.status == "failed" and invoice.attempts == 1
        case = ExceptionCase.objects.get(kind="posting_failed", source_id=str(invoice.pk))
        assert "you must reopen the period" in case.error_message  # Tryton's own words
    finally:
        tryton_period_reopen(admin, period)
    from erp_sync.services import posting_replay

    for failed in Posting.objects.filter(status="failed"):
        posting_replay(posting=failed, actor=ACTOR, reason="period reopened")
    outbox_drain()
    assert set(Posting.objects.values_list("status", flat=True)) == {"posted"}
    assert set(in_tryton(admin, conn.external_id_prefix).values()) == {1}


def test_a_journal_refused_for_a_closed_period_is_re_dated_and_posted_on_the_new_date(
    tryton_conn, admin: TrytonClient
) -> None:
    """Last month closed in Tryton: the invoice and the journal moving its advance fee to
    deferred revenue are refused; both re-dated today (the exception queue's correction) and
    replayed, they reach Tryton on today's date, last month still closed, once each."""
    from erp_sync.services import posting_replay
    from erp_sync.services.corrections import posting_date_correct

    with last_month_closed_in_tryton(admin, tryton_conn) as closed:
        outbox_drain()
        journal = Posting.objects.get(document_type="journal")
        assert journal.status == "failed"
        assert journal.payload["date"] == closed.last_day.isoformat()
        for failed in Posting.objects.filter(status="failed"):
            posting_date_correct(
                posting=failed, new_date=closed.today, actor=ACTOR, reason="last month is closed"
            )
            posting_replay(posting=failed, actor=ACTOR, reason="re-dated")
        outbox_drain()
    assert set(Posting.objects.values_list("status", flat=True)) == {"posted"}
    (move,) = admin.call(
        "model.account.move.search_read",
        [("ledgerline_external_id", "=", journal.external_id)],
        0,
        None,
        None,
        ["state", "date", "period"],
        context={"company_filter": "all"},
    )
    assert move["state"] == "posted" and move["date"] == closed.today
    assert move["period"] != closed.period
    assert set(in_tryton(admin, closed.conn.external_id_prefix).values()) == {1}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_never_send_the_same_posting_to_tryton(
    tryton_conn, admin: TrytonClient
) -> None:
    world = this_world(8)
    # Tryton answers 503 to a post while another worker's post of the same company holds its
    # locks (it retries inside, then gives up): retry soon, and as often as it takes
    conn = tryton_conn(world, backoff_base_seconds=1, backoff_cap_seconds=2, max_attempts=60)
    ledger_consume(actor=ACTOR)
    results = []

    def drain(name: str) -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                results.append((name, outbox_drain(worker=name).claimed))
                if not Posting.objects.exclude(status__in=["posted", "failed", "dead"]).exists():
                    break
                time.sleep(0.5)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {name for name, claimed in results if claimed} == {"w0", "w1"}  # both worked
    statuses = list(Posting.objects.values_list("status", "last_error"))
    assert {st for st, _ in statuses} == {"posted"}, statuses
    # no posting was ever sent by two workers at the same time: its attempts never overlap
    from erp_sync.models import PostingAttempt

    for posting in Posting.objects.all():
        spans = sorted(
            PostingAttempt.objects.filter(posting=posting).values_list("started_at", "finished_at")
        )
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end is not None and end <= start
    assert in_tryton(admin, conn.external_id_prefix) == {
        ext: 1 for ext in Posting.objects.values_list("external_id", flat=True)
    }


def tryton_methods(posting: Posting) -> list[str]:
    """The Tryton methods one posting's attempts called, in order (logins left out)."""
    from erp_sync.models import PostingAttempt

    return [
        ex["method"]
        for attempt in PostingAttempt.objects.filter(posting=posting).order_by("number")
        for ex in attempt.exchanges
        if ex["method"] != "common.db.login"
    ]


def test_a_clean_first_posting_makes_two_tryton_calls_per_document(tryton_conn) -> None:
    """create, then post with its read-back in the same answer (Ledgerline's module's
    ``ledgerline_post``): no lookup before the create on a first attempt, no separate read, the
    party looked up once per connector. The bare JSON-RPC loop of bench/posting.py makes the
    same two calls a document."""
    world = this_world(3)
    conn = tryton_conn(world)
    ledger_consume(actor=ACTOR)
    outbox_drain(worker="count")
    postings = list(Posting.objects.filter(connection=conn).order_by("id"))
    assert {p.status for p in postings} == {"posted"}
    assert {p.attempts for p in postings} == {1}
    invoices = [p for p in postings if p.document_type == "invoice"]
    journals = [p for p in postings if p.document_type == "journal"]
    assert len(invoices) == 3 and len(journals) == 3  # each advance fee moved by a journal
    # the first of each kind also met the company, its accounts, journals and period
    for posting in journals[1:]:
        assert tryton_methods(posting) == [
            "model.account.move.create",
            "model.account.move.ledgerline_post",
        ]
    for posting in invoices[1:]:
        methods = tryton_methods(posting)
        party = [m for m in methods if m.startswith("model.party.")]
        assert methods[len(party) :] == [
            "model.account.invoice.create",
            "model.account.invoice.ledgerline_post",
        ]
        # a party Tryton does not know yet: searched, created, its address read (once ever)
        assert party in (
            ["model.party.party.search_read"],
            [
                "model.party.party.search_read",
                "model.party.party.create",
                "model.party.party.read",
            ],
        )

    # a later document of a known customer: the two calls and nothing else
    billing.credit_memo_issue(invoice=world.invoices[0], reason="goodwill", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    outbox_drain(worker="count")
    credit = Posting.objects.get(connection=conn, document_type="credit_memo")
    assert credit.status == "posted"
    assert tryton_methods(credit) == [
        "model.account.invoice.create",
        "model.account.invoice.ledgerline_post",
    ]
