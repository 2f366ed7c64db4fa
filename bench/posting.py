#!/usr/bin/env python
"""Benchmark: postings per second to Tryton (on PostgreSQL) through the outbox, against the
same documents created by a bare JSON-RPC loop (the ERP's own speed, the ceiling).

    .venv/bin/python bench/posting.py                     # 60 invoices a round, 1, 2, 4 workers
    .venv/bin/python bench/posting.py --documents 20 --workers 1,2

Each round (one per worker count) starts from an empty Ledgerline database (PostgreSQL,
default ll_bench_posting, re-created and migrated once, flushed between rounds), bills
``--documents`` customers for November 2026 (the tests' world: 1.00 of usage and a 100.00 fee
a month billed in advance, VAT 10 %), finalizes them today and lets the ledger writer fill the
outbox for a Tryton connection (documents mode; each invoice also gets the journal that moves
its advance fee to deferred revenue, so 2 postings an invoice). Then:

- ours: N worker processes, each running erp_sync's drain (``outbox_drain``) until the outbox
  is empty (each logged in to Tryton before the clock starts, as the bare loop's clients are;
  2 Tryton calls a clean posting, plus one for each customer new to the worker); throughput = postings / (last worker's end - first worker's start), measured inside
  the workers after Django is set up. Our overhead per posting is its time outside the
  connector call (claim, attempt row, finish), from the drain's own timings; the drain claims
  up to 10 postings in one transaction, and each posting of a batch carries an equal share of
  that claim's time;
- bare: N threads, each with its own logged-in TrytonClient, sending the same documents (the
  same Tryton values, built before the clock starts, under another external id) with nothing
  but ``create`` and ``post`` per document: no lookup, no read-back, no bookkeeping.

Tryton runs on PostgreSQL in a database of its own (default ll_bench_posting_tryton, prepared
once by scripts/tryton.sh and kept; later runs reuse it) on a free port, started and stopped
by this script. The last line is one JSON object: ``postings_per_s`` and ``bare_rpc_per_s`` by
worker count, ``ratio_vs_bare`` by worker count, ``overhead_ms_p95`` (the worst round) and
per round, and whether the targets (ratio >= 0.8 at each count, overhead p95 < 10 ms) are met.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
PASSWORD_ENV = "LL_BENCH_TRYTON_PASSWORD"
API_LOGIN, API_PASSWORD = "ledgerline", "ledgerline-api"

WORKER = r"""
import json, os, sys, time
import django
django.setup()
from django.db import connection
from erp_sync.services import outbox_drain
connection.ensure_connection()
# logged in and the company known before the clock starts, as the bare loop's clients are
from erp_sync.models import ErpConnection
from erp_sync.services.outbox import connector_of
for conn in ErpConnection.objects.filter(enabled=True):
    connector_of(conn).company()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
from erp_sync.models import Posting
started = time.time()
claimed = posted = 0
erp, total = [], []
# drain until every posting is posted: a post that still meets Tryton's strict-sequence lock
# after trytond's own replays (erp/tryton/trytond.conf) is a 503 and waits its (short, in this
# benchmark) backoff
while True:
    result = outbox_drain(worker=sys.argv[1], max_postings=100000)
    claimed += result.claimed
    posted += result.posted
    erp += result.erp_seconds_each
    total += result.total_seconds_each
    if not Posting.objects.exclude(status="posted").exists():
        break
    time.sleep(0.2)
ended = time.time()
print(json.dumps({
    "started": started, "ended": ended, "claimed": claimed, "posted": posted,
    "erp": erp, "total": total,
}))
"""


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--documents", type=int, default=60, help="invoices billed per round")
    p.add_argument("--workers", default="1,2,4", help="worker counts, one round each")
    p.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ll_bench_posting"
        ),
    )
    p.add_argument(
        "--tryton-uri",
        default=os.environ.get("TRYTON_DB_URI", "postgresql://postgres@127.0.0.1:5432/"),
    )
    p.add_argument("--tryton-db", default="ll_bench_posting_tryton")
    return p.parse_args()


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


# ------------------------------------------------------------------ Tryton


def start_tryton(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    port = free_port()
    db_dir = ROOT / "var" / "bench-tryton"
    env = {
        **os.environ,
        "TRYTON_PORT": str(port),
        "TRYTON_DB_DIR": str(db_dir),
        "TRYTON_DB": args.tryton_db,
        "TRYTON_DB_URI": args.tryton_uri,
        "TRYTON_API_LOGIN": API_LOGIN,
        "TRYTON_API_PASSWORD": API_PASSWORD,
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tryton.sh"), "--background"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"bench: Tryton did not start:\n{done.stdout}\n{done.stderr}")
    log(f"Tryton on PostgreSQL ({args.tryton_db}) up in {time.monotonic() - started:.0f}s")
    return env, f"http://127.0.0.1:{port}"


def stop_tryton(env: dict[str, str]) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "tryton.sh"), "stop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )


# ------------------------------------------------------------------ Ledgerline


def setup_django(url: str) -> None:
    import psycopg2

    name = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill_outbox(documents: int, tryton_url: str, tryton_db: str, prefix: str) -> Any:
    from django.core.management import call_command
    from django.utils import timezone

    from billing import services as billing
    from erp_sync.demo import tryton_connection
    from erp_sync.models import Posting
    from erp_sync.services import ledger_consume
    from tests.billing.conftest import ACTOR
    from tests.erp_sync.world import billed_world

    call_command("flush", interactive=False, verbosity=0)
    world = billed_world(documents, finalize=False)
    billing.invoices_finalize(
        invoice_ids=[i.pk for i in world.invoices], actor=ACTOR, now=timezone.now()
    )
    conn = tryton_connection(
        legal_entity=world.entity,
        actor=ACTOR,
        base_url=tryton_url,
        database=tryton_db,
        login=API_LOGIN,
        password_env=PASSWORD_ENV,
        external_id_prefix=prefix,
        # Tryton answers 503 when concurrent posts wait on its locks: retry soon
        max_attempts=100,
        backoff_base_seconds=1,
        backoff_cap_seconds=2,
    )
    ledger_consume(actor=ACTOR)
    return conn, list(Posting.objects.filter(connection=conn).order_by("id"))


def run_ours(workers: int) -> dict[str, Any]:
    from django.db import connections

    connections.close_all()
    env = {**os.environ, PASSWORD_ENV: API_PASSWORD}
    procs = [
        subprocess.Popen(
            [PY, "-c", WORKER, f"w{i}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            sys.exit("bench: a worker did not start")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    overheads = [
        (total - erp) * 1000
        for r in results
        for erp, total in zip(r["erp"], r["total"], strict=True)
    ]
    return {
        "posted": sum(r["posted"] for r in results),
        "claimed": sum(r["claimed"] for r in results),
        "seconds": wall,
        "overhead_ms": overheads,
        "erp_ms_p50": statistics.median([e * 1000 for r in results for e in r["erp"]]),
    }


def bare_payloads(
    conn: Any, postings: list[Any], suffix: str
) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """The Tryton values of the same documents, built (parties, accounts resolved) up front."""
    import dataclasses

    from erp_sync.connectors.tryton import TrytonConnector
    from erp_sync.services.outbox import Resolver, build_document, build_journal, connection_config

    os.environ[PASSWORD_ENV] = API_PASSWORD
    connector = TrytonConnector(connection_config(conn))
    resolver = Resolver(conn)
    out: list[tuple[str, dict[str, Any]]] = []
    for posting in postings:
        if posting.document_type in ("invoice", "credit_memo"):
            doc = build_document(posting, resolver)
            doc = dataclasses.replace(doc, external_id=f"{doc.external_id}-{suffix}")
            out.append(("account.invoice", connector._invoice_values(doc)))
        else:
            journal = build_journal(posting, resolver)
            journal = dataclasses.replace(journal, external_id=f"{journal.external_id}-{suffix}")
            out.append(("account.move", connector._move_values(journal)))
    company_id: int = connector.company()["id"]
    return out, company_id


def run_bare(
    conn: Any, payloads: list[tuple[str, dict[str, Any]]], company: int, workers: int
) -> dict[str, Any]:
    from erp_sync.tryton_rpc import TrytonClient, TrytonPermanentError, TrytonTransientError

    clients = []
    for _ in range(workers):
        client = TrytonClient(conn.base_url, conn.database, API_LOGIN, API_PASSWORD)
        client.login()
        clients.append(client)
    shares = [payloads[i::workers] for i in range(workers)]
    errors: list[BaseException] = []

    ctx = {"company": company}

    def retried(call: Any) -> Any:
        """Tryton's 503 (concurrent transactions waiting on a lock) was rolled back: again."""
        while True:
            try:
                return call()
            except TrytonTransientError:
                time.sleep(0.05)

    def post(client: TrytonClient, model: str, record: int) -> None:
        try:
            client.call(f"model.{model}.post", [record], context=ctx)
        except TrytonPermanentError as exc:  # a warning: acknowledge it, as we do
            if exc.tryton_type != "UserWarning":
                raise
            client.call(
                "model.res.user.warning.skip", exc.extra["warning_name"], False, context=ctx
            )
            client.call(f"model.{model}.post", [record], context=ctx)

    def loop(client: TrytonClient, share: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            for model, values in share:
                (record,) = retried(
                    lambda: client.call(
                        f"model.{model}.create", [values], context={"company": company}
                    )
                )
                retried(lambda: post(client, model, record))
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(c, s)) for c, s in zip(clients, shares, strict=True)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        sys.exit(f"bench: the bare loop failed: {errors[0]}")
    return {"posted": len(payloads), "seconds": seconds}


def main() -> int:
    args = parse()
    counts = [int(w) for w in args.workers.split(",")]
    os.environ[PASSWORD_ENV] = API_PASSWORD  # the connection's password, read from the environment
    setup_django(args.database_url)
    tryton_env, tryton_url = start_tryton(args)
    rounds: dict[int, dict[str, Any]] = {}
    try:
        for workers in counts:
            prefix = f"b{uuid.uuid4().hex[:6]}w{workers}"
            conn, postings = fill_outbox(args.documents, tryton_url, args.tryton_db, prefix)
            payloads, company = bare_payloads(conn, postings, "bare")
            ours = run_ours(workers)
            if ours["posted"] != len(postings):
                from erp_sync.models import Posting

                stuck = list(
                    Posting.objects.exclude(status="posted").values_list(
                        "external_id", "status", "last_error"
                    )[:5]
                )
                sys.exit(f"bench: {len(postings) - ours['posted']} postings not posted: {stuck}")
            bare = run_bare(conn, payloads, company, workers)
            ours_rate = ours["posted"] / ours["seconds"]
            bare_rate = bare["posted"] / bare["seconds"]
            rounds[workers] = {
                "postings": len(postings),
                "postings_per_s": round(ours_rate, 2),
                "bare_rpc_per_s": round(bare_rate, 2),
                "ratio_vs_bare": round(ours_rate / bare_rate, 3),
                "overhead_ms_p50": round(statistics.median(ours["overhead_ms"]), 2),
                "overhead_ms_p95": round(p95(ours["overhead_ms"]), 2),
                "erp_call_ms_p50": round(ours["erp_ms_p50"], 1),
            }
            log(f"{workers} worker(s): {json.dumps(rounds[workers])}")
    finally:
        stop_tryton(tryton_env)
    summary = {
        "documents_per_round": args.documents,
        "postings_per_s": {w: r["postings_per_s"] for w, r in rounds.items()},
        "bare_rpc_per_s": {w: r["bare_rpc_per_s"] for w, r in rounds.items()},
        "ratio_vs_bare": {w: r["ratio_vs_bare"] for w, r in rounds.items()},
        "overhead_ms_p95": max(r["overhead_ms_p95"] for r in rounds.values()),
        "overhead_ms_p95_by_workers": {w: r["overhead_ms_p95"] for w, r in rounds.items()},
        "targets_met": {
            "ratio_vs_bare>=0.8": all(r["ratio_vs_bare"] >= 0.8 for r in rounds.values()),
            "overhead_ms_p95<10": all(r["overhead_ms_p95"] < 10 for r in rounds.values()),
        },
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
