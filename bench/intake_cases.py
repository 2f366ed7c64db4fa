#!/usr/bin/env python
"""Benchmark: one batch of 10,000 events for 10,000 distinct unmapped customers (a new
integration sending usage before its mappings exist), while another producer keeps sending
one-event requests.

    python bench/intake_cases.py                 # 10,000 events, then the same customers again
    python bench/intake_cases.py --events 2000   # a short run

Creates its own PostgreSQL database (default ll_bench_intake_cases; dropped and re-created,
dropped again at the end), migrates it, starts gunicorn (production settings, 2 workers, the
README's timeout) and a producer thread that POSTs one-event requests for a mapped customer
of another source, one after another. Then it POSTs the big batch (source "newapp", customer
refs new-0 .. new-N-1: every event held, N new unmapped_customer cases) and, once it is
answered, a second batch of new events for the same customers (N cases counted again).
Reports each batch's seconds, the cases and audit entries stored, whether the audit chain
verifies, and the one-event producer's latencies while the batches ran (p50/p95, ms).
Targets (issue 12): the 10,000-event batch stored in under 5 s, the other producer's p95
under 250 ms. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ingest import admin_sql, bench_env, free_port  # noqa: E402
from ingest_client import event_json, post, request  # noqa: E402

PY = sys.executable
GUNICORN_TIMEOUT = 120  # the README's production command


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--events", type=int, default=10_000, help="events (and customers) per batch")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--database", default="ll_bench_intake_cases")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--keep-db", action="store_true")
    return p.parse_args()


def batch_body(events: int, base: datetime, run: int) -> bytes:
    ts = (base + timedelta(seconds=run)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "events": [
                {
                    "event_id": f"n{run}-{i}",
                    "source": "newapp",
                    "customer_ref": f"new-{i}",
                    "metric": "api_calls",
                    "timestamp": ts,
                    "properties": {"units": 1, "region": "eu"},
                }
                for i in range(events)
            ]
        }
    ).encode()


class Producer(threading.Thread):
    """One-event requests one after another (source "shop", mapped customers), each timed."""

    def __init__(self, port: int, key: str, base: datetime) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.base = port, key, base
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (sent at, ms)
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            body = f'{{"events":[{event_json(n, 10, self.base)}]}}'.encode()
            sent = time.perf_counter()
            status, data = post(
                "127.0.0.1", self.port, request("127.0.0.1", self.port, self.key, body)
            )
            self.samples.append((sent, (time.perf_counter() - sent) * 1000))
            if status != 200 or b'"accepted":1' not in data:
                self.errors.append(f"HTTP {status}: {data[:200]!r}")
            n += 1
            time.sleep(0.01)


def percentile(ms: list[float], q: int) -> float:
    if len(ms) < 2:
        return ms[0] if ms else 0.0
    return statistics.quantiles(ms, n=100)[q - 1]


def main() -> None:
    args = parse()
    db_url = f"postgres://postgres@{args.host}:5432/{args.database}"
    env = bench_env(db_url, 10)
    load_before = os.getloadavg()
    admin_sql(args.host, f'DROP DATABASE IF EXISTS "{args.database}"')
    admin_sql(args.host, f'CREATE DATABASE "{args.database}"')
    gunicorn = None
    try:
        print(f"migrating {args.database} ...", flush=True)
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run(
            [PY, "bench/ingest_setup.py"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        ids = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        gunicorn = subprocess.Popen(
            [PY, "-m", "gunicorn", "config.wsgi:application", "--workers", str(args.workers),
             "--bind", f"127.0.0.1:{port}", "--timeout", str(GUNICORN_TIMEOUT),
             "--log-level", "warning"],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("gunicorn did not come up")

        base = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        bodies = [batch_body(args.events, base, run) for run in (0, 1)]
        producer = Producer(port, ids["raw_key"], base)
        producer.start()
        time.sleep(2)  # the producer's warm-up (both workers have served a request)
        window_start = time.perf_counter()
        seconds, answers = [], []
        for body in bodies:
            sent = time.perf_counter()
            status, data = post("127.0.0.1", port, request("127.0.0.1", port, ids["raw_key"], body))
            seconds.append(time.perf_counter() - sent)
            if status != 200:
                sys.exit(f"the batch answered HTTP {status}: {data[:500]!r}")
            start = data.index(b'"counts":') + len(b'"counts":')
            answers.append(json.loads(data[start : data.index(b"}", start) + 1]))
            print(f"batch of {args.events:,}: {seconds[-1]:.2f} s, {answers[-1]}", flush=True)
        window_end = time.perf_counter()
        time.sleep(0.5)
        producer.stop.set()
        producer.join()
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=60)
        gunicorn = None

        during = [ms for at, ms in producer.samples if window_start <= at <= window_end]
        import psycopg2

        conn = psycopg2.connect(host=args.host, user="postgres", dbname=args.database)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), coalesce(sum(occurrence_count), 0) FROM exceptions_exceptioncase "
                "WHERE kind = 'unmapped_customer'"
            )
            cases, occurrences = cur.fetchone() or (0, 0)
            cur.execute("SELECT count(*) FROM metering_heldevent")
            held = (cur.fetchone() or (0,))[0]
            cur.execute("SELECT action, count(*) FROM exceptions_auditentry GROUP BY action")
            audit = dict(cur.fetchall())
        conn.close()
        verify = subprocess.run(
            [PY, "manage.py", "verify_audit"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        result = {
            "events": args.events,
            "new_cases": cases,
            "seconds": round(seconds[0], 2),
            "recur_seconds": round(seconds[1], 2),
            "other_producer_p50_ms": round(percentile(during, 50), 1),
            "other_producer_p95_ms": round(percentile(during, 95), 1),
            "other_producer_max_ms": round(max(during, default=0.0), 1),
            "other_producer_requests": len(during),
            "other_producer_errors": len(producer.errors),
            "held_events": held,
            "case_occurrences": occurrences,
            "audit_case_open": audit.get("case.open", 0),
            "audit_case_recur": audit.get("case.recur", 0),
            "audit_chain_ok": verify.returncode == 0,
            "gunicorn_timeout_s": GUNICORN_TIMEOUT,
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
        }
        ok = (
            cases == args.events
            and held == 2 * args.events
            and occurrences == 2 * args.events
            and result["audit_case_open"] == args.events
            and result["audit_case_recur"] == args.events
            and result["audit_chain_ok"]
            and not producer.errors
        )
        result["counts_ok"] = ok
        print(
            f"first batch {result['seconds']} s, second (recurring) {result['recur_seconds']} s; "
            f"other producer during them: {len(during)} requests, p50 "
            f"{result['other_producer_p50_ms']} ms, p95 {result['other_producer_p95_ms']} ms; "
            f"load {result['load_before']} -> {result['load_after']}"
        )
        print(json.dumps(result))
        if not ok:
            sys.exit(1)
    finally:
        if gunicorn is not None:
            gunicorn.kill()
        if not args.keep_db:
            admin_sql(args.host, f'DROP DATABASE IF EXISTS "{args.database}"')


if __name__ == "__main__":
    main()
