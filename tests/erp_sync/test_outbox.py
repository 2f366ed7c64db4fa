"""The outbox state machine on the in-memory ERP: pending -> in_flight -> posted | retry_wait ->
dead | failed, unknown outcomes, leases, held postings and their release, replay."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import services as billing
from erp_sync.connectors.memory import memory_erp
from erp_sync.models import AccountRole, AttemptOutcome, PartyMapping, Posting, PostingAttempt
from erp_sync.services import (
    account_mapping_set,
    ledger_consume,
    outbox_drain,
    posting_replay,
)
from erp_sync.services.outbox import _PREPARED, CLAIM_BATCH, FINISH_POSTED, _places
from exceptions.models import AuditEntry, ExceptionCase
from exceptions.services import audit_verify_chain
from tests.billing.conftest import ACTOR
from tests.conftest import requires_postgres
from tests.erp_sync.world import erp_fixture  # noqa: F401 - the `erp` fixture
from tests.erp_sync.world import billed_world, memory_connection

D = Decimal
pytestmark = pytest.mark.django_db


def _due_now() -> None:
    Posting.objects.filter(status="retry_wait").update(next_attempt_at=timezone.now())


def test_a_posting_goes_pending_in_flight_posted_with_one_attempt_and_its_exchanges(erp) -> None:
    world = billed_world()
    conn = memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    result = outbox_drain(worker="w1")
    assert (result.claimed, result.posted) == (1, 1)
    posting = Posting.objects.get()
    assert posting.status == "posted" and posting.attempts == 1 and posting.posted_at
    assert posting.erp_number == f"M-{world.invoices[0].number}"
    attempt = PostingAttempt.objects.get()
    assert attempt.outcome == AttemptOutcome.POSTED and attempt.worker == "w1"
    assert [ex["method"] for ex in attempt.exchanges] == ["party.ensure", "invoice.post"]
    assert attempt.http_status == 200 and attempt.finished_at is not None
    # the document reached the ERP once, with our accounts mapped
    rec = erp.records[("invoice", posting.external_id)]
    assert erp.creates[posting.external_id] == 1
    assert sorted((ln.account, ln.debit, ln.credit) for ln in rec.lines) == [
        ("1200", D("221.10"), D(0)),
        ("2200", D(0), D("20.10")),
        ("2400", D(0), D("100.00")),
        ("4000", D(0), D("100.00")),
        ("4100", D(0), D("1.00")),
    ]
    # the party the connector created is remembered
    assert PartyMapping.objects.get(connection=conn).created_by_connector
    assert (
        AuditEntry.objects.filter(action="posting.posted", object_id=str(posting.pk)).count() == 1
    )
    assert outbox_drain().claimed == 0  # nothing twice


def test_transient_errors_retry_with_backoff_then_post(erp) -> None:
    world = billed_world()
    memory_connection(world.entity, backoff_base_seconds=10, backoff_cap_seconds=40)
    ledger_consume(actor=ACTOR)
    erp.fail_next("transient", "HTTP 503", count=2, methods=("invoice.post",))
    before = timezone.now()
    assert outbox_drain().retry == 1
    posting = Posting.objects.get()
    assert posting.status == "retry_wait" and posting.attempts == 1
    assert posting.next_attempt_at is not None
    # equal jitter: between half and all of base * 2^0
    assert (
        before + timedelta(seconds=5)
        <= posting.next_attempt_at
        <= timezone.now() + timedelta(seconds=10)
    )
    assert outbox_drain().claimed == 0  # not due yet
    _due_now()
    outbox_drain()
    posting.refresh_from_db()
    assert posting.attempts == 2 and posting.last_error == "HTTP 503"
    _due_now()
    assert outbox_drain().posted == 1
    assert [a.outcome for a in PostingAttempt.objects.order_by("number")] == [
        "transient",
        "transient",
        "posted",
    ]
    assert erp.creates[posting.external_id] == 1


def test_attempts_exhausted_go_dead_and_open_a_case_with_the_erps_words(erp) -> None:
    world = billed_world()
    memory_connection(world.entity, max_attempts=2)
    ledger_consume(actor=ACTOR)
    erp.fail_next("transient", "Tryton server error HTTP 502", count=5)
    outbox_drain()
    _due_now()
    assert outbox_drain().dead == 1
    posting = Posting.objects.get()
    assert posting.status == "dead" and posting.attempts == 2
    case = ExceptionCase.objects.get(kind="posting_dead")
    assert case.error_message == "Tryton server error HTTP 502"
    assert case.amount_at_stake == D("221.10") and case.source_id == str(posting.pk)


def test_a_permanent_error_fails_at_once_and_replay_after_correction_posts_it(erp) -> None:
    from datetime import date

    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    erp.closed_before = date(2027, 1, 1)
    assert outbox_drain().failed == 1
    posting = Posting.objects.get()
    assert posting.status == "failed" and posting.attempts == 1
    case = ExceptionCase.objects.get(kind="posting_failed")
    assert case.error_message == 'The period of "2026-12-03" is closed.'
    assert outbox_drain().claimed == 0  # failed stays failed until someone replays it
    erp.closed_before = None  # finance reopened the period
    posting_replay(posting=posting, actor=ACTOR, reason="period reopened")
    assert AuditEntry.objects.filter(action="posting.replay", reason="period reopened").count() == 1
    assert outbox_drain().posted == 1
    posting.refresh_from_db()
    assert posting.status == "posted" and posting.attempts == 2
    case.refresh_from_db()
    assert case.status == "resolved"
    assert erp.creates[posting.external_id] == 1


def test_replay_is_refused_for_a_posting_that_is_not_failed_dead_or_held(erp) -> None:
    from core.errors import AppError

    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    with pytest.raises(AppError) as err:
        posting_replay(posting=Posting.objects.get(), actor=ACTOR, reason="why not")
    assert err.value.code == "erp_posting_not_replayable"


def test_an_unknown_outcome_is_recorded_as_such_and_the_next_attempt_looks_up_first(erp) -> None:
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    # the ERP applies the document, then the connection resets before its answer
    erp.fail_next(
        "unknown_after_apply", "connection reset after sending", methods=("invoice.post",)
    )
    assert outbox_drain().retry == 1
    posting = Posting.objects.get()
    assert posting.lookup_first and posting.last_error_class == "unknown_outcome"
    _due_now()
    assert outbox_drain().posted == 1
    second = PostingAttempt.objects.get(number=2)
    assert [ex["method"] for ex in second.exchanges] == ["find"]  # found: nothing sent again
    assert PostingAttempt.objects.get(number=1).outcome == AttemptOutcome.UNKNOWN
    assert erp.creates[posting.external_id] == 1


def test_a_worker_that_died_holding_the_lease_is_taken_over_after_it_expires(erp) -> None:
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    posting = Posting.objects.get()
    # a worker claimed it, sent it and was killed before recording anything
    from erp_sync.services.outbox import _claim_batch, _send

    claims = _claim_batch(
        connection_id=None, worker="killed", now=timezone.now(), exclude=set(), limit=1
    )
    assert claims is not None
    (claim,) = claims
    _send(claim, [])
    assert erp.creates[posting.external_id] == 1
    assert outbox_drain().claimed == 0  # lease still held
    Posting.objects.filter(pk=posting.pk).update(lease_expires_at=timezone.now())
    assert outbox_drain(worker="rescuer").posted == 1
    first, second = PostingAttempt.objects.order_by("number")
    assert first.outcome == AttemptOutcome.UNKNOWN and "killed" in first.error_message
    assert [ex["method"] for ex in second.exchanges] == ["find"]
    assert erp.creates[posting.external_id] == 1


def test_a_missing_revenue_mapping_holds_the_document_whole_and_mapping_it_releases_it(erp) -> None:
    world = billed_world(2)
    conn = memory_connection(world.entity, mapped=False)
    for role, key, account in [
        (AccountRole.RECEIVABLE, "", "1200"),
        (AccountRole.REVENUE, "api_calls", "4100"),
        (AccountRole.TAX_PAYABLE, "", "2200"),
        (AccountRole.DEFERRED_REVENUE, "", "2400"),
    ]:
        account_mapping_set(connection=conn, role=role, key=key, account=account, actor=ACTOR)
    ledger_consume(actor=ACTOR)
    result = outbox_drain()
    assert result.claimed == 0 and result.held == 2
    assert erp.calls == []  # nothing sent, not half of a document
    assert set(Posting.objects.values_list("status", "attempts")) == {("held", 0)}
    case = ExceptionCase.objects.get(kind="missing_gl_mapping")
    assert "revenue" in case.title and "'platform'" in case.title
    assert sorted(case.details["waiting_external_ids"]) == sorted(
        Posting.objects.values_list("external_id", flat=True)
    )
    account_mapping_set(
        connection=conn, role="revenue", key="platform", account="4200", actor=ACTOR
    )
    case.refresh_from_db()
    assert case.status == "resolved"
    assert outbox_drain().posted == 2
    rec = erp.records[("invoice", f"ll-inv-{world.invoices[0].pk}")]
    assert "4200" in {ln.account for ln in rec.lines}


def test_credit_memo_and_void_wait_for_the_invoice_then_reach_the_erp(erp) -> None:
    world = billed_world(2)
    memory_connection(world.entity)
    inv0, inv1 = world.invoices
    memo = billing.credit_memo_issue(invoice=inv0, reason="goodwill", actor=ACTOR)
    billing.invoice_void(invoice=inv1, reason="duplicate", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    erp.fail_next("transient", "busy", count=2, methods=("invoice.post",))
    outbox_drain()  # both invoices fail once; memo and cancel wait for them
    assert set(
        Posting.objects.filter(document_type__in=["credit_memo", "invoice_cancel"]).values_list(
            "status", flat=True
        )
    ) == {"pending"}
    _due_now()
    outbox_drain()
    assert set(Posting.objects.values_list("status", flat=True)) == {"posted"}
    assert erp.records[("credit_memo", f"ll-cn-{memo.pk}")].total == D("221.10")
    assert erp.records[("invoice", f"ll-inv-{inv1.pk}")].state == "cancelled"


def test_the_password_is_read_from_the_environment_and_redacted_in_exchanges(
    erp, monkeypatch
) -> None:
    world = billed_world()
    memory_connection(world.entity, password_env="TEST_ERP_PASSWORD")
    ledger_consume(actor=ACTOR)
    assert outbox_drain().failed == 1  # not set: a permanent error naming the variable
    assert "TEST_ERP_PASSWORD" in Posting.objects.get().last_error
    monkeypatch.setenv("TEST_ERP_PASSWORD", "s3cret-value")
    posting_replay(posting=Posting.objects.get(), actor=ACTOR, reason="password set")
    from erp_sync.connectors import base
    from erp_sync.connectors.memory import MemoryConnector

    original = MemoryConnector.ensure_party

    def leaky(self, party):
        self.recorder(
            base.Exchange(
                "login",
                {"password": self.config.password, "note": f"pw={self.config.password}"},
                "ok",
                200,
                1.0,
            )
        )
        return original(self, party)

    monkeypatch.setattr(MemoryConnector, "ensure_party", leaky)
    assert outbox_drain().posted == 1
    text = str(PostingAttempt.objects.get(number=2).exchanges)
    assert "s3cret-value" not in text and "***" in text


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_never_send_the_same_posting(erp) -> None:
    # more postings than the drains claim at once (CLAIM_BATCH each), so all three get some
    world = billed_world(3 * CLAIM_BATCH + 6)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    erp.delay_seconds = 0.02
    results = []
    start = threading.Barrier(3)

    def drain(name: str) -> None:
        try:
            start.wait()
            results.append(outbox_drain(worker=name))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = 3 * CLAIM_BATCH + 6
    assert sum(r.claimed for r in results) == n and all(r.claimed for r in results)
    assert set(Posting.objects.values_list("status", "attempts")) == {("posted", 1)}
    assert erp.max_concurrent_same == 1
    assert set(erp.creates.values()) == {1} and len(erp.creates) == n
    # the three drains appended their audit entries to one unbroken chain
    assert AuditEntry.objects.filter(action="posting.posted").count() == n
    assert audit_verify_chain() == (AuditEntry.objects.count(), None)


def test_defer_by_journal_books_the_invoice_to_revenue_and_moves_the_advance_fee_by_journal(
    erp,
) -> None:
    world = billed_world()
    memory_connection(world.entity, options={"defer_by_journal": True})
    ledger_consume(actor=ACTOR)
    invoice_posting, deferral = Posting.objects.order_by("id")
    assert (invoice_posting.document_type, deferral.document_type) == ("invoice", "journal")
    assert outbox_drain().posted == 2
    inv = erp.records[("invoice", invoice_posting.external_id)]
    assert "2400" not in {ln.account for ln in inv.lines}  # revenue accounts only on the invoice
    moved = erp.records[("journal", deferral.external_id)]
    assert sorted((ln.account, ln.debit, ln.credit) for ln in moved.lines) == [
        ("2400", D(0), D("100.00")),
        ("4000", D("100.00"), D(0)),
    ]
    # together the ERP holds what our ledger holds: 200.00 revenue-side, 100.00 of it deferred
    net: dict[str, Decimal] = {}
    for rec in (inv, moved):
        for ln in rec.lines:
            net[ln.account] = net.get(ln.account, D(0)) + ln.debit - ln.credit
    assert (net["4000"], net["2400"], net["4100"]) == (D("-100.00"), D("-100.00"), D("-1.00"))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_drain_makes_one_statement_a_posting_and_a_few_a_batch(erp) -> None:
    """The drain's database work per posting, counted so it cannot silently grow back: a
    batch of CLAIM_BATCH claims is one transaction of four statements (lock, mappings,
    parties, then counters, leases and attempts in one); each posting's finish is ONE prepared
    statement (attempt, party mapping, posting, audit entry)."""
    world = billed_world(CLAIM_BATCH)  # each invoice with its deferral journal: 2 postings
    memory_connection(world.entity, options={"defer_by_journal": True})
    ledger_consume(actor=ACTOR)
    n = Posting.objects.count()
    assert n == 2 * CLAIM_BATCH
    _places("USD")  # a currency's minor unit is read once a process
    # a connection that has not prepared the finish yet (another test's drain may have)
    with db_connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")
    _PREPARED.by_thread.clear()
    with CaptureQueriesContext(db_connection) as ctx:
        result = outbox_drain(worker="w1")
    assert (result.claimed, result.posted) == (n, n)
    sql = [q["sql"] for q in ctx.captured_queries]
    finishes = [s for s in sql if f"EXECUTE {FINISH_POSTED}_" in s]
    assert len(finishes) == n
    # the finish is parsed and planned once on the connection: looked up, then PREPAREd
    prepares = [s for s in sql if s.startswith(f"PREPARE {FINISH_POSTED}_")]
    assert len(prepares) == 1 and "_audit_entry" in prepares[0]
    batches = -(-n // CLAIM_BATCH)
    # per batch BEGIN + 4 + COMMIT; then the empty claim (BEGIN, SELECT, COMMIT), the held count;
    # once, the prepared statement's lookup and PREPARE
    assert len(sql) == n + 6 * batches + 4 + 2, "\n".join(s[:120] for s in sql)
    # every posting posted once, its party mapped once, one audit entry each, the chain whole
    assert set(Posting.objects.values_list("status", "attempts")) == {("posted", 1)}
    assert PartyMapping.objects.count() == CLAIM_BATCH
    assert AuditEntry.objects.filter(action="posting.posted").count() == n
    assert audit_verify_chain()[1] is None


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_prepared_finish_survives_a_reconnect(erp) -> None:
    """The finish is PREPAREd on the session: after Django opens a new connection (the old one
    closed, as CONN_MAX_AGE or an error does), the next finish prepares it there again."""
    world = billed_world(2)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    n = Posting.objects.count()
    assert n >= 2
    assert outbox_drain(worker="w1", max_postings=1).posted == 1
    db_connection.close()
    assert outbox_drain(worker="w1").posted == n - 1
    assert set(Posting.objects.values_list("status", flat=True)) == {"posted"}
    with db_connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE %s", ["erp_sync_%"]
        )
        assert cur.fetchone() == (1,)
    assert audit_verify_chain()[1] is None


def test_a_batch_gives_back_the_postings_its_lease_no_longer_covers(erp) -> None:
    """A posting further down a claimed batch is sent only with half its lease left (and more
    than the connector's timeout); the rest go back unsent, as if never claimed, and the next
    claim sends them: each posting once, one attempt each."""
    world = billed_world(3)
    memory_connection(world.entity, lease_seconds=4, timeout_seconds=1)
    ledger_consume(actor=ACTOR)
    # 1.1 s a posting (party and invoice, 0.55 s each): the third send would start with under
    # 2 s of its lease left
    erp.delay_seconds = 0.55
    result = outbox_drain(worker="w1")
    assert (result.claimed, result.posted) == (3, 3)
    assert set(Posting.objects.values_list("status", "attempts")) == {("posted", 1)}
    first, second, third = PostingAttempt.objects.order_by("posting_id")
    assert {(a.number, a.outcome) for a in (first, second, third)} == {(1, AttemptOutcome.POSTED)}
    # the first two went under one claim; the third, given back, under a later one
    assert first.started_at == second.started_at
    assert second.finished_at is not None and third.started_at > second.finished_at
    assert set(erp.creates.values()) == {1}


def test_a_batch_over_two_connections_keeps_each_erps_own_party_ids(erp) -> None:
    """One claim batch holds postings of two connections of one entity (each entry gets a
    posting per connection); a party created in one ERP is never mapped on the other."""
    other = memory_erp("other")
    other.reset()
    for _ in range(5):  # the other ERP's ids run ahead, so the two ERPs' party ids differ
        next(other._ids)
    world = billed_world(2)
    a = memory_connection(world.entity)
    b = memory_connection(world.entity, name="erp-b", database="other")
    ledger_consume(actor=ACTOR)
    try:
        result = outbox_drain(worker="w1")
        assert result.posted == Posting.objects.count() == 4
        for conn, its_erp in ((a, erp), (b, other)):
            mapped = dict(
                PartyMapping.objects.filter(connection=conn).values_list(
                    "customer__code", "erp_party_id"
                )
            )
            assert mapped == {c.code: its_erp.parties[c.code] for c in world.customers}
        assert erp.parties != other.parties
    finally:
        other.reset()
