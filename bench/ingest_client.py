"""bench/ingest.py helper: one HTTP client process.

Pre-builds its batches (not timed), prints "ready", waits for a line on stdin,
then POSTs them over one keep-alive connection and prints one JSON line with
its counts. Also holds the deterministic event generator the COPY baseline uses.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

BATCH = 1000
DUP_PER_BATCH = 100  # 10% of every batch re-sends events already sent


def batch_event_numbers(batch_no: int) -> list[int]:
    """Event numbers of batch `batch_no`: 900 new ones and 100 already sent (earlier in this batch's
    stream, so the duplicate count does not depend on which client goes first)."""
    fresh = BATCH - DUP_PER_BATCH
    first = batch_no * fresh
    new = list(range(first, first + fresh))
    dups = [first + (k * 7) % fresh for k in range(DUP_PER_BATCH)]  # repeats inside the batch
    if batch_no > 0:
        dups = [
            (first - fresh) + (k * 13) % fresh for k in range(DUP_PER_BATCH)
        ]  # from the previous batch
    return new + dups


def event_fields(n: int, customers: int, base: datetime) -> tuple[str, str, str, int]:
    ts = (base + timedelta(milliseconds=n * 3)).isoformat().replace("+00:00", "Z")
    return f"e{n}", f"acct-{n % customers}", ts, n % 10


def event_json(n: int, customers: int, base: datetime) -> str:
    event_id, ref, ts, units = event_fields(n, customers, base)
    region = ("eu", "us", "ap")[n % 3]
    return (
        f'{{"event_id":"{event_id}","source":"shop","customer_ref":"{ref}","metric":"api_calls",'
        f'"timestamp":"{ts}","properties":{{"units":{units},"region":"{region}"}}}}'
    )


def batches(batch_numbers: list[int], customers: int, base: datetime) -> Iterator[bytes]:
    for b in batch_numbers:
        yield (
            '{"events":['
            + ",".join(event_json(n, customers, base) for n in batch_event_numbers(b))
            + "]}"
        ).encode()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    base = datetime.fromisoformat(cfg["base"]).astimezone(UTC)
    bodies = list(batches(cfg["batches"], cfg["customers"], base))
    print("ready", flush=True)
    sys.stdin.readline()
    conn = http.client.HTTPConnection(cfg["host"], cfg["port"], timeout=300)
    headers = {"Authorization": f"Bearer {cfg['key']}", "Content-Type": "application/json"}
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "held": 0, "requests": 0, "errors": 0}
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/api/v1/events", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        counts["requests"] += 1
        if resp.status != 200:
            counts["errors"] += 1
            print(f"HTTP {resp.status}: {data[:300]!r}", file=sys.stderr)
            continue
        for k, v in orjson.loads(data)["counts"].items():
            if k in counts:
                counts[k] += v
    counts["seconds"] = time.perf_counter() - started
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
