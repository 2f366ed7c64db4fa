"""kill -9 of a drain worker in the middle of 200 postings to the real Tryton (on PostgreSQL):
after recovery every document exists exactly once in Tryton, every posting is posted, and the
control totals match to the cent.

The worker is a separate process draining the outbox (erp_sync.services.outbox_drain) through
the fault proxy. It is killed at the worst moment: Tryton has committed a post and the proxy
holds its answer (the post and its read-back are one request, ``ledgerline_post``), so our
database still has the posting in flight. A second worker
takes it once its lease has expired, looks the document up in Tryton first, and finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection as db_connection

from billing.models import Invoice
from erp_sync.demo import tryton_connection
from erp_sync.models import AttemptOutcome, Posting, PostingAttempt
from erp_sync.services import ledger_consume, outbox_drain
from erp_sync.services.outbox import CLAIM_BATCH
from erp_sync.tryton_rpc import TrytonClient
from tests.billing.conftest import ACTOR
from tests.conftest import requires_postgres
from tests.erp_sync.world import billed_world

from .conftest import API_LOGIN, API_PASSWORD, REPO, TrytonServer
from .faultproxy import FaultProxy

pytestmark = [pytest.mark.tryton, requires_postgres, pytest.mark.django_db(transaction=True)]

D = Decimal
PASSWORD_ENV = "LL_TEST_TRYTON_PASSWORD"
DOCUMENTS = 100  # invoices: each also has its deferral journal, so 200 postings
TIMEOUT_SECONDS = 20  # generous: a loaded 2-core machine has Tryton take seconds to post
LEASE_SECONDS = 25  # > the connection's time-out (a database constraint)
DRAIN = (
    "import django; django.setup(); "
    "from erp_sync.services import outbox_drain; outbox_drain(worker='victim')"
)


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_env() -> dict[str, str]:
    s = db_connection.settings_dict
    url = f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        PASSWORD_ENV: API_PASSWORD,
    }


def test_kill_9_in_the_middle_of_200_postings_leaves_every_document_once(
    tryton_server: TrytonServer, admin: TrytonClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, API_PASSWORD)
    world = billed_world(DOCUMENTS)
    proxy = FaultProxy(tryton_server.url).start()
    try:
        conn = tryton_connection(
            legal_entity=world.entity,
            actor=ACTOR,
            base_url=proxy.url,
            database=tryton_server.database,
            login=API_LOGIN,
            password_env=PASSWORD_ENV,
            external_id_prefix=f"k{uuid.uuid4().hex[:8]}",
            timeout_seconds=TIMEOUT_SECONDS,  # the held answer outlasts it: the kill comes first
            lease_seconds=LEASE_SECONDS,
        )
        ledger_consume(actor=ACTOR)
        postings = Posting.objects.filter(connection=conn)
        total = postings.count()
        invoices = postings.filter(document_type="invoice")
        assert invoices.count() == DOCUMENTS and total >= 200

        # a third of the way in, Tryton commits an invoice's post and the answer (with the
        # read-back) is held in the proxy (our database still has it in flight): kill it then
        proxy.add(
            "delay",
            "model.account.invoice.ledgerline_post",
            after=DOCUMENTS // 3,
            seconds=2 * TIMEOUT_SECONDS,
        )
        victim = subprocess.Popen([sys.executable, "-c", DRAIN], cwd=REPO, env=worker_env())
        try:
            wait_for(lambda: proxy.holding > 0, 1200, "a post's answer held in the proxy")
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=30)
        finally:
            if victim.poll() is None:
                victim.kill()
        assert victim.returncode == -signal.SIGKILL
        proxy.clear()

        # in flight: the posting whose answer was held, and the rest of its claim batch,
        # claimed (counted) but not sent yet
        in_flight = list(postings.filter(status="in_flight"))
        assert 1 <= len(in_flight) <= CLAIM_BATCH
        assert {p.attempts for p in in_flight} == {1}
        posted_before = postings.filter(status="posted").count()
        assert 0 < posted_before < total
        # Tryton has the held one posted (we do not know yet), and none of the others
        in_erp = []
        for model in ("account.invoice", "account.move"):
            in_erp += admin.call(
                f"model.{model}.search_read",
                [("ledgerline_external_id", "in", [p.external_id for p in in_flight])],
                0,
                None,
                None,
                ["ledgerline_external_id", "state"],
            )
        assert [r["state"] for r in in_erp] == ["posted"]
        (stranded,) = [p for p in in_flight if p.external_id == in_erp[0]["ledgerline_external_id"]]
        assert stranded.document_type == "invoice"

        # recovery: another worker, once the lease has expired
        time.sleep(LEASE_SECONDS + 0.5)
        deadline = time.monotonic() + 900
        while postings.exclude(status="posted").exists() and time.monotonic() < deadline:
            outbox_drain(worker="rescuer")
        assert set(postings.values_list("status", flat=True)) == {"posted"}, list(
            postings.exclude(status="posted").values_list("external_id", "status", "last_error")
        )
    finally:
        proxy.stop()

    # the stranded posting: an unknown attempt, then found in Tryton and not sent again
    stranded.refresh_from_db()
    outcomes = list(
        PostingAttempt.objects.filter(posting=stranded)
        .order_by("number")
        .values_list("outcome", flat=True)
    )
    assert outcomes == [AttemptOutcome.UNKNOWN, AttemptOutcome.POSTED]

    # every document exactly once in Tryton, counted there per external id
    rows = []
    for model, fields in (
        ("account.invoice", ["ledgerline_external_id", "total_amount", "state"]),
        ("account.move", ["ledgerline_external_id", "state"]),
    ):
        rows += admin.call(
            f"model.{model}.search_read",
            [("ledgerline_external_id", "like", f"{conn.external_id_prefix}-%")],
            0,
            None,
            None,
            fields,
        )
    ids = [r["ledgerline_external_id"] for r in rows]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == set(postings.values_list("external_id", flat=True))
    assert {r["state"] for r in rows} == {"posted"}

    # control totals to the cent: billing's invoices = the postings = what Tryton holds
    billed = sum((i.total for i in Invoice.objects.filter(legal_entity=world.entity)), D(0))
    posted = sum((p.amount for p in invoices), D(0))
    in_tryton = sum((r["total_amount"] for r in rows if "total_amount" in r), D(0))
    assert billed == posted == in_tryton
    assert billed == DOCUMENTS * (D("1.00") + D("100.00") + D("100.00")) * D("1.10")
