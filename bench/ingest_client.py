"""bench/ingest.py helper: one HTTP client process.

Pre-builds its batches (not timed), prints "ready", waits for a line on stdin,
then POSTs them (a connection each, as gunicorn's sync workers close after a response) and prints one JSON line with
its counts and each request's latency. Also holds the deterministic event generator the COPY baseline uses.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import orjson

BATCH = 1000
DUP_PER_BATCH = 100  # 10% of every batch re-sends events already sent


def batch_event_numbers(batch_no: int, lag: int = 1) -> list[int]:
    """Event numbers of batch `batch_no`: 900 new ones and 100 re-sent from batch `batch_no - lag`
    (the first batches repeat events of their own instead).

    With lag = the number of clients (clients take batches round-robin), the re-sent events come
    from the same client's previous batch, already answered: a producer re-delivering events it
    sent before, the duplicates an at-least-once producer makes. With lag = 1 they come from the
    batch another client is sending at that moment: each duplicate then waits, inside PostgreSQL,
    for the other request's transaction to end before it can be called a duplicate (the worst case,
    measured with --duplicates concurrent)."""
    fresh = BATCH - DUP_PER_BATCH
    first = batch_no * fresh
    new = list(range(first, first + fresh))
    if batch_no < lag:
        dups = [first + (k * 7) % fresh for k in range(DUP_PER_BATCH)]  # repeats inside the batch
    else:
        earlier = (batch_no - lag) * fresh
        dups = [earlier + (k * 13) % fresh for k in range(DUP_PER_BATCH)]
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


def batches(
    batch_numbers: list[int], customers: int, base: datetime, lag: int = 1
) -> Iterator[bytes]:
    for b in batch_numbers:
        yield (
            '{"events":['
            + ",".join(event_json(n, customers, base) for n in batch_event_numbers(b, lag))
            + "]}"
        ).encode()


def post(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """One request on its own connection (gunicorn's sync workers close after each response),
    with plain sockets: http.client's Python cost per request showed in the 2-core figures."""
    with socket.create_connection((host, port), timeout=300) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(262144):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def request(host: str, port: int, key: str, body: bytes) -> bytes:
    """One ingest request as sent on the wire (its own connection, closed after the answer)."""
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class ClientConfig(TypedDict):
    """What bench/ingest.py gives a client (its one argument, as JSON)."""

    host: str
    port: int
    key: str
    customers: int
    base: str  # ISO 8601
    batches: list[int]
    lag: int


class ClientReport(TypedDict):
    """The JSON line a client prints when it is done, which bench/ingest.py reads."""

    accepted: int
    duplicate: int
    rejected: int
    held: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]


def response_counts(body: bytes) -> dict[str, int]:
    """The "counts" object of an ingest response, read without decoding the 1,000 per-event
    results after it (~140 µs a response, on the cores the server runs on; a load generator
    should cost as little as it can). The bench checks the stored events afterwards."""
    start = body.index(b'"counts":') + len(b'"counts":')
    counts: dict[str, int] = orjson.loads(body[start : body.index(b"}", start) + 1])
    return counts


def main() -> None:
    cfg: ClientConfig = json.loads(sys.argv[1])
    base = datetime.fromisoformat(cfg["base"]).astimezone(UTC)
    requests = [
        request(cfg["host"], cfg["port"], cfg["key"], body)
        for body in batches(cfg["batches"], cfg["customers"], base, cfg["lag"])
    ]
    print("ready", flush=True)
    sys.stdin.readline()
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "held": 0, "requests": 0, "errors": 0}
    latencies: list[float] = []  # ms per request, connect to last byte of the answer
    started = time.perf_counter()
    for wire in requests:
        sent = time.perf_counter()
        status, data = post(cfg["host"], cfg["port"], wire)
        latencies.append(round((time.perf_counter() - sent) * 1000, 3))
        counts["requests"] += 1
        if status != 200:
            counts["errors"] += 1
            print(f"HTTP {status}: {data[:300]!r}", file=sys.stderr)
            continue
        for k, v in response_counts(data).items():
            if k in counts:
                counts[k] += v
    report: ClientReport = {
        "accepted": counts["accepted"],
        "duplicate": counts["duplicate"],
        "rejected": counts["rejected"],
        "held": counts["held"],
        "requests": counts["requests"],
        "errors": counts["errors"],
        "seconds": time.perf_counter() - started,
        "latencies_ms": latencies,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
