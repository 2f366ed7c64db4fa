#!/usr/bin/env python
"""Benchmark: usage ingestion through the real stack against a raw COPY of the same rows.

    python bench/ingest.py                      # 1,000,000 events, 10% duplicates
    python bench/ingest.py --events 100000      # a short run
    python bench/ingest.py --runs 5             # five measurements, the median one reported

Creates its own PostgreSQL database (default ll_bench_ingest; dropped and
re-created, dropped again at the end), migrates it, starts gunicorn (production
settings, --workers N, default one per core) and separate HTTP client processes that POST batches of
1,000 events (900 new, 100 re-sent) to /api/v1/events. Batches are built
before the clock starts. By default each client re-sends 100 events of its own
previous batch (--duplicates concurrent: of the batch another client is sending
at the same moment). Then it truncates the event table and times a raw COPY of
the same 1,000,000 rows into the same (partitioned, indexed) table, twice; the
faster COPY is the floor. Then the exactly-once floor: the same rows written the way
exactly-once needs at the least (per batch, one transaction: look the keys up, insert the new
ones, COPY their events), in plain SQL from one process, from empty tables, twice; the faster
run is that floor.
Prints events_per_s, copy_events_per_s, ratio_vs_copy, exactly_once_floor_per_s,
ratio_vs_exactly_once_floor, the peak RSS of the
gunicorn master and workers, the p50/p95/p99 latency of a 1,000-event request
under the load, and the p50/p95 of 200 one-event requests sent one at a time
after it; the last line is one JSON object (with --runs N: the median run's
figures, ratio_median/min/max and every run's figures; one run varies by ~5%
on a 2-core VM).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from ingest_client import (  # noqa: E402
    BATCH,
    ClientConfig,
    ClientReport,
    batch_event_numbers,
    event_fields,
    event_json,
    post,
    request,
)

if TYPE_CHECKING:  # only its type: importing the script would set Django up
    from ingest_setup import SetupIds
    from psycopg2.extensions import connection

PY = sys.executable


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--events", type=int, default=1_000_000, help="events sent (a multiple of 1,000)"
    )
    # One gunicorn worker per core (PostgreSQL needs the cores too: 3 workers on 2 cores measured
    # no faster) and two producers per worker, so that a worker never waits for the next request
    # while its producer reads the last answer (2 clients: ~10% slower than 4).
    cores = os.cpu_count() or 2
    p.add_argument("--workers", type=int, default=cores, help="gunicorn worker processes")
    p.add_argument("--clients", type=int, default=2 * cores, help="HTTP client processes")
    p.add_argument("--customers", type=int, default=200)
    p.add_argument(
        "--duplicates",
        choices=["resent", "concurrent"],
        default="resent",
        help="resent: each client re-sends 100 events of its own previous, answered batch (an "
        "at-least-once producer); concurrent: 100 events of the batch another client is sending "
        "at that moment (the worst case: each waits for the other transaction)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the whole measurement (fresh database, ingest, COPY floor) this many times; "
        "the JSON line then reports the median run and every run's figures",
    )
    p.add_argument("--database", default="ll_bench_ingest")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    return p.parse_args()


def bench_env(db_url: str, customers: int) -> dict[str, str]:
    """The environment of the bench's gunicorn and set-up: production settings on `db_url`,
    no TLS redirect, no rate limit; bench/ingest_setup.py creates and maps `customers`."""
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "API_KEY_RATE": "1000000/min",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONWARNINGS": "ignore::UserWarning",
        "BENCH_CUSTOMERS": str(customers),
    }


def admin_sql(host: str, sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=host, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


class PeakMemory(threading.Thread):
    """Samples the summed RSS of the gunicorn master and its workers."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            total = rss_kb(self.pid) + sum(rss_kb(c) for c in children(self.pid))
            self.peak_kb = max(self.peak_kb, total)
            time.sleep(0.1)


SINGLE_EVENT_REQUESTS = 200


def single_event_latency(
    port: int, key: str, customers: int, base: datetime, first: int
) -> dict[str, float]:
    """p50/p95 (ms) of one-event requests sent one after another once the load is over (an API
    client sending an event as it happens). New events, numbered from `first` (the load's events
    are below it); they are stored, so the run expects SINGLE_EVENT_REQUESTS more events stored.
    The COPY floor copies only the load's rows."""
    times = []
    for n in range(first, first + SINGLE_EVENT_REQUESTS):
        body = f'{{"events":[{event_json(n, customers, base)}]}}'.encode()
        wire = request("127.0.0.1", port, key, body)
        sent = time.perf_counter()
        status, data = post("127.0.0.1", port, wire)
        times.append((time.perf_counter() - sent) * 1000)
        if status != 200 or b'"accepted":1' not in data:
            sys.exit(f"one-event request: HTTP {status}: {data[:300]!r}")
    return percentiles(times)


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of request latencies (ms)."""
    cuts = statistics.quantiles(ms, n=100)
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


def copy_text(
    n_batches: int, customers: int, base: datetime, ids: SetupIds, lag: int
) -> io.StringIO:
    """The same rows the clients send (duplicates included), as COPY text for the event table."""
    cust = ids["customer_ids"]
    received = datetime.now(UTC).isoformat()
    lines = []
    for b in range(n_batches):
        for n in batch_event_numbers(b, lag):
            event_id, ref, ts, units = event_fields(n, customers, base)
            region = ("eu", "us", "ap")[n % 3]
            lines.append(
                f"shop\t{event_id}\t{ref}\t{cust[n % customers]}\t{ids['metric_id']}\t{ids['version_id']}\t"
                f'{ts}\t{units}\t{{"region": "{region}", "units": {units}}}\t{received}\t'
                f"{ids['api_key_id']}"
            )
    lines.append("")
    return io.StringIO("\n".join(lines))


# The exactly-once floor's statements: the ingest service's key lookup and key insert, in the
# same forms (keys as one newline-joined string), then COPY of the events whose keys were new.
FLOOR_LOOKUP = """
SELECT array_agg(k.key) FROM metering_eventkey k
WHERE k.key = ANY((SELECT string_to_array(%s, E'\\n'))::text[])
"""
FLOOR_INSERT_KEYS = """
INSERT INTO metering_eventkey (key, content_hash, received_at)
SELECT k, h, %s FROM unnest(string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n')) AS t(k, h)
"""
COPY_EVENTS = (
    "COPY metering_usageevent (source, event_id, customer_ref, customer_id, "
    'metric_id, metric_version_id, "timestamp", value, properties, received_at, '
    "api_key_id) FROM STDIN"
)


def floor_batches(text: io.StringIO, n_batches: int) -> list[tuple[str, str, dict[str, str]]]:
    """Per batch, made before the clock: its distinct keys (sorted, newline-joined), their
    content hashes, and each key's COPY line."""
    lines = text.getvalue().split("\n")
    out = []
    for b in range(n_batches):
        rows: dict[str, str] = {}
        for line in lines[b * BATCH : (b + 1) * BATCH]:
            source, event_id, _ = line.split("\t", 2)
            rows.setdefault(f"{source}\t{event_id}", line)  # a repeat inside the batch: once
        keys = sorted(rows)
        hashes = "\n".join(f"{hash(k) & (2**128 - 1):032x}" for k in keys)
        out.append(("\n".join(keys), hashes, {k: rows[k] for k in keys}))
    return out


def exactly_once_floor(conn: connection, batches: list[tuple[str, str, dict[str, str]]]) -> float:
    """Seconds to write the rows the way exactly-once needs at the least, in plain SQL from one
    process: per batch of 1,000, one transaction that looks its keys up, inserts the new ones
    and COPYs their events (the duplicates are found by the lookup and not written)."""
    received = datetime.now(UTC)
    started = time.perf_counter()
    for keys, hashes, rows in batches:
        with conn.cursor() as cur:
            cur.execute(FLOOR_LOOKUP, [keys])
            row = cur.fetchone()
            assert row is not None  # an aggregate answers one row
            found = set(row[0] or ())
            fresh = [k for k in rows if k not in found]
            if fresh:
                fresh_hashes = hashes
                if found:
                    hash_of = dict(zip(rows, hashes.split("\n"), strict=True))
                    fresh_hashes = "\n".join(hash_of[k] for k in fresh)
                cur.execute(FLOOR_INSERT_KEYS, [received, "\n".join(fresh), fresh_hashes])
                cur.copy_expert(COPY_EVENTS, io.StringIO("\n".join(rows[k] for k in fresh) + "\n"))
        conn.commit()
    return time.perf_counter() - started


def main() -> None:
    args = parse()
    if args.events % BATCH:
        sys.exit(f"--events must be a multiple of {BATCH}")
    results: list[RunResult] = []
    for n in range(args.runs):
        if args.runs > 1:
            print(f"--- run {n + 1} of {args.runs}", flush=True)
        results.append(run(args))
    result: Mapping[str, object]
    if args.runs == 1:
        result = results[0]
    else:  # the median run's figures (by ratio), and every run's
        ratios = sorted(r["ratio_vs_copy"] for r in results)
        result = {
            **sorted(results, key=lambda r: r["ratio_vs_copy"])[(len(results) - 1) // 2],
            "counts_ok": all(r["counts_ok"] for r in results),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratio_min": ratios[0],
            "ratio_max": ratios[-1],
            "runs_at_half_of_copy": sum(r >= 0.5 for r in ratios),
            "events_per_s_median": round(statistics.median(r["events_per_s"] for r in results)),
            "ratio_vs_exactly_once_floor_median": round(
                statistics.median(r["ratio_vs_exactly_once_floor"] for r in results), 3
            ),
            "ratio_vs_exactly_once_floor_min": min(
                r["ratio_vs_exactly_once_floor"] for r in results
            ),
            "ratio_vs_exactly_once_floor_max": max(
                r["ratio_vs_exactly_once_floor"] for r in results
            ),
            "runs": [
                {
                    "events_per_s": r["events_per_s"],
                    "copy_events_per_s": r["copy_events_per_s"],
                    "ratio_vs_copy": r["ratio_vs_copy"],
                    "exactly_once_floor_per_s": r["exactly_once_floor_per_s"],
                    "ratio_vs_exactly_once_floor": r["ratio_vs_exactly_once_floor"],
                    "server_peak_mb": r["server_peak_mb"],
                    "batch_p95_ms": r["batch_p95_ms"],
                }
                for r in results
            ],
        }
        print(
            f"{args.runs} runs: ratio {ratios[0]:.3f}-{ratios[-1]:.3f}, median {result['ratio_median']:.3f}, "
            f"{result['runs_at_half_of_copy']} at 0.50 or more; vs the exactly-once floor "
            f"{result['ratio_vs_exactly_once_floor_min']:.3f}-"
            f"{result['ratio_vs_exactly_once_floor_max']:.3f}, median "
            f"{result['ratio_vs_exactly_once_floor_median']:.3f}; events/s median "
            f"{result['events_per_s_median']:,}"
        )
    print(json.dumps(result))
    if not result["counts_ok"]:
        sys.exit(1)


class RunResult(TypedDict):
    """One measurement, as the last JSON line reports it (with --runs 1)."""

    events: int
    seconds: float
    events_per_s: int
    copy_seconds: float
    copy_runs_seconds: list[float]
    copy_events_per_s: int
    ratio_vs_copy: float
    exactly_once_floor_seconds: float
    exactly_once_floor_runs_seconds: list[float]
    exactly_once_floor_per_s: int
    ratio_vs_exactly_once_floor: float
    server_peak_mb: float
    batch_p50_ms: float
    batch_p95_ms: float
    batch_p99_ms: float
    single_event_p50_ms: float
    single_event_p95_ms: float
    accepted: int
    duplicate: int
    rejected: int
    http_errors: int
    stored_events: int
    workers: int
    clients: int
    cpus: int | None
    counts_ok: bool


def run(args: argparse.Namespace) -> RunResult:
    """One measurement: fresh database, ingest through gunicorn, then the COPY floor."""
    n_batches = args.events // BATCH
    db_url = f"postgres://postgres@{args.host}:5432/{args.database}"
    env = bench_env(db_url, args.customers)

    admin_sql(args.host, f'DROP DATABASE IF EXISTS "{args.database}"')
    admin_sql(args.host, f'CREATE DATABASE "{args.database}"')
    gunicorn = None
    try:
        print(f"migrating {args.database} ...", flush=True)
        subprocess.run([PY, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        ids: SetupIds = json.loads(
            subprocess.run(
                [PY, "bench/ingest_setup.py"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )

        port = free_port()
        gunicorn = subprocess.Popen(
            [
                PY,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--workers",
                str(args.workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--timeout",
                "300",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            sys.exit("gunicorn did not come up")
        memory = PeakMemory(gunicorn.pid)
        memory.start()

        base = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        lag = args.clients if args.duplicates == "resent" else 1
        clients = []
        for k in range(args.clients):
            cfg: ClientConfig = {
                "host": "127.0.0.1",
                "port": port,
                "key": ids["raw_key"],
                "customers": args.customers,
                "base": base.isoformat(),
                "batches": list(range(k, n_batches, args.clients)),
                "lag": lag,
            }
            clients.append(
                subprocess.Popen(
                    [PY, str(ROOT / "bench" / "ingest_client.py"), json.dumps(cfg)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for c in clients:
            assert c.stdout is not None and c.stdout.readline().strip() == "ready"
        print(
            f"sending {args.events:,} events ({n_batches:,} batches of {BATCH}) from {args.clients} clients "
            f"to gunicorn with {args.workers} workers ...",
            flush=True,
        )
        started = time.perf_counter()
        for c in clients:
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        results: list[ClientReport] = []
        for c in clients:
            assert c.stdout is not None
            results.append(json.loads(c.stdout.readline()))
        elapsed = time.perf_counter() - started
        for c in clients:
            c.wait()
        single = single_event_latency(
            port, ids["raw_key"], args.customers, base, first=n_batches * BATCH
        )
        memory.stop.set()
        memory.join()
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=60)
        gunicorn = None

        totals = {
            "accepted": sum(r["accepted"] for r in results),
            "duplicate": sum(r["duplicate"] for r in results),
            "rejected": sum(r["rejected"] for r in results),
            "held": sum(r["held"] for r in results),
            "errors": sum(r["errors"] for r in results),
        }
        # each 1,000-event request's latency, as its client saw it (connect to the last byte)
        latency = percentiles([ms for r in results for ms in r["latencies_ms"]])
        import psycopg2

        conn = psycopg2.connect(host=args.host, user="postgres", dbname=args.database)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metering_usageevent")
            row = cur.fetchone()
            assert row is not None
            stored: int = row[0]
        conn.commit()

        # The raw COPY floor: the same rows into the same table (its indexes, triggers and
        # partitions), timed twice from an empty table; the faster run is the floor.
        copy_runs = []
        text = copy_text(n_batches, args.customers, base, ids, lag)
        for _ in range(2):
            with conn.cursor() as cur:
                cur.execute("TRUNCATE metering_usageevent")
                cur.execute("CHECKPOINT")
            conn.commit()
            text.seek(0)
            copy_started = time.perf_counter()
            with conn.cursor() as cur:
                cur.copy_expert(
                    "COPY metering_usageevent (source, event_id, customer_ref, customer_id, "
                    'metric_id, metric_version_id, "timestamp", value, properties, received_at, '
                    "api_key_id) FROM STDIN",
                    text,
                )
            conn.commit()
            copy_runs.append(time.perf_counter() - copy_started)
        copy_elapsed = min(copy_runs)

        # The exactly-once floor: the same rows, keys looked up and inserted, events copied, batch
        # by batch from empty key and event tables; also the faster of two runs.
        floor_runs = []
        per_batch = floor_batches(text, n_batches)
        for _ in range(2):
            with conn.cursor() as cur:
                cur.execute("TRUNCATE metering_usageevent")
                cur.execute("TRUNCATE metering_eventkey")
                cur.execute("CHECKPOINT")
            conn.commit()
            floor_runs.append(exactly_once_floor(conn, per_batch))
        floor_elapsed = min(floor_runs)
        conn.close()

        events_per_s = args.events / elapsed
        copy_per_s = args.events / copy_elapsed
        expected = {
            "accepted": args.events * 9 // 10,
            "duplicate": args.events // 10,
            "http_errors": 0,
            "stored_events": args.events * 9 // 10 + SINGLE_EVENT_REQUESTS,
        }
        got = {
            "accepted": totals["accepted"],
            "duplicate": totals["duplicate"],
            "http_errors": totals["errors"],
            "stored_events": stored,
        }
        wrong = {k: (got[k], v) for k, v in expected.items() if got[k] != v}
        result: RunResult = {
            "events": args.events,
            "seconds": round(elapsed, 2),
            "events_per_s": round(events_per_s),
            "copy_seconds": round(copy_elapsed, 2),
            "copy_runs_seconds": [round(r, 2) for r in copy_runs],
            "copy_events_per_s": round(copy_per_s),
            "ratio_vs_copy": round(events_per_s / copy_per_s, 3),
            "exactly_once_floor_seconds": round(floor_elapsed, 2),
            "exactly_once_floor_runs_seconds": [round(r, 2) for r in floor_runs],
            "exactly_once_floor_per_s": round(args.events / floor_elapsed),
            "ratio_vs_exactly_once_floor": round(events_per_s * floor_elapsed / args.events, 3),
            "server_peak_mb": round(memory.peak_kb / 1024, 1),
            "batch_p50_ms": round(latency["p50"], 1),
            "batch_p95_ms": round(latency["p95"], 1),
            "batch_p99_ms": round(latency["p99"], 1),
            "single_event_p50_ms": round(single["p50"], 2),
            "single_event_p95_ms": round(single["p95"], 2),
            "accepted": totals["accepted"],
            "duplicate": totals["duplicate"],
            "rejected": totals["rejected"],
            "http_errors": totals["errors"],
            "stored_events": stored,
            "workers": args.workers,
            "clients": args.clients,
            "cpus": os.cpu_count(),
            "counts_ok": not wrong,
        }
        print(
            f"ingest:  {args.events:,} events in {elapsed:.1f} s = {events_per_s:,.0f} events/s "
            f"({totals['accepted']:,} accepted, {totals['duplicate']:,} duplicate, {stored:,} stored)"
        )
        print(f"COPY:    {args.events:,} rows in {copy_elapsed:.1f} s = {copy_per_s:,.0f} rows/s")
        print(
            f"exactly-once floor: {args.events:,} rows in {floor_elapsed:.1f} s = "
            f"{args.events / floor_elapsed:,.0f} rows/s (keys looked up and inserted, events "
            "copied, per batch)"
        )
        print(
            f"ratio:   {events_per_s / copy_per_s:.1%} of COPY, "
            f"{result['ratio_vs_exactly_once_floor']:.1%} of the exactly-once floor; "
            f"server peak RSS {memory.peak_kb / 1024:.0f} MB"
        )
        print(
            f"latency: a 1,000-event request, {args.clients} clients at once: p50 {latency['p50']:.1f} ms, "
            f"p95 {latency['p95']:.1f} ms, p99 {latency['p99']:.1f} ms; a one-event request, "
            f"one at a time: p50 {single['p50']:.1f} ms, p95 {single['p95']:.1f} ms"
        )
        if wrong:
            print(f"WRONG COUNTS (got, expected): {wrong}")
        return result
    finally:
        if gunicorn is not None:
            gunicorn.kill()
        if not args.keep_db:
            admin_sql(args.host, f'DROP DATABASE IF EXISTS "{args.database}"')


if __name__ == "__main__":
    main()
