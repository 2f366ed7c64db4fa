#!/usr/bin/env python
"""Benchmark: the exception queue's filtered list page with 100,000 open cases, on PostgreSQL.

    python bench/queue_page.py                      # 100,000 open cases (+ 20,000 closed)
    python bench/queue_page.py --open 20000 --requests 100

Builds its own database (default ll_bench_queue, dropped and re-created),
migrates it, loads cases spread over kinds, statuses, severities, entities,
customers, assignees, ages, amounts and due dates (loading is not timed), logs
a clerk in and requests the queue page with a mix of filters and sorts through
Django's test Client: the real URL conf and middleware (sessions, auth, login
required, CSRF, time zone, htmx), a logged-in session. Reports p50/p95/max of
the whole response. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Cases per bulk insert while loading (memory vs round trips; loading is untimed).
INSERT_CHUNK = 5000
#: The filtered pages the benchmark requests, in turn: what finance staff do all day.
QUERIES = [
    "",
    "kind=usage_rejected",
    "kind=posting_failed&severity=critical",
    "status=awaiting_approval",
    "severity=high&sort=-amount",
    "entity=bench-de",
    "customer=c0042",
    "assignee=clerk",
    "view=mine",
    "view=past_due",
    "due=week",
    "age_min=10",
    "amount_min=1000&amount_max=50000",
    "sort=-severity",
    "sort=due&kind=unmapped_customer",
    "connection=tryton-main",
    "page=40",
    "kind=reconciliation_mismatch&entity=bench-us&sort=-opened",
]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--open", type=int, default=100_000, help="open cases")
    p.add_argument("--closed", type=int, default=20_000, help="resolved or dismissed cases")
    p.add_argument("--requests", type=int, default=360, help="timed requests")
    p.add_argument("--database", default="ll_bench_queue")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument(
        "--reuse", action="store_true", help="measure the database a previous run left (no load)"
    )
    return p.parse_args()


def recreate_database(name: str, host: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=host, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def load(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from core import roles
    from core.models import Currency, Customer, LegalEntity
    from exceptions.models import CaseKind, ExceptionCase, Severity

    call_command("migrate", verbosity=0)
    roles.sync_role_permissions()
    rnd = random.Random(args.seed)
    cur_rows = {
        c: Currency.objects.get_or_create(code=c, defaults={"name": c, "minor_units": m})[0]
        for c, m in (("USD", 2), ("EUR", 2), ("JPY", 0))
    }
    entities = [
        LegalEntity.objects.create(
            code=code, name=code, base_currency=cur_rows[cur], country=cc, timezone="UTC"
        )
        for code, cur, cc in (
            ("bench-us", "USD", "US"),
            ("bench-de", "EUR", "DE"),
            ("bench-jp", "JPY", "JP"),
        )
    ]
    customers = Customer.objects.bulk_create(
        [
            Customer(legal_entity=entities[i % 3], code=f"c{i:04d}", name=f"Customer {i}")
            for i in range(2000)
        ]
    )
    users = []
    for name, role in (
        ("clerk", roles.FINANCE_CLERK),
        ("clerk2", roles.FINANCE_CLERK),
        ("approver", roles.FINANCE_APPROVER),
    ):
        u = User.objects.create_user(username=name, password="bench-pw-1")
        u.groups.add(Group.objects.get(name=role))
        users.append(u)
    kinds = [k for k, _ in CaseKind.choices]
    sevs = [s for s, _ in Severity.choices]
    now = timezone.now()
    open_statuses = ["open"] * 6 + ["in_progress"] * 3 + ["awaiting_approval"]

    def case(i: int, closed: bool) -> ExceptionCase:
        opened = now - timedelta(minutes=rnd.randint(1, 60 * 24 * 40))
        cust = customers[rnd.randrange(len(customers))] if rnd.random() < 0.8 else None
        ent = cust.legal_entity if cust else entities[rnd.randrange(3)]
        amount = Decimal(rnd.randint(100, 20_000_000)) / 100 if rnd.random() < 0.7 else None
        status = rnd.choice(["resolved", "dismissed"]) if closed else rnd.choice(open_statuses)
        return ExceptionCase(
            kind=rnd.choice(kinds),
            fingerprint=f"bench:{i}",
            title=f"Bench failure {i}",
            severity=rnd.choice(sevs),
            status=status,
            error_code="bench",
            error_message="Something failed in the bench, as the failing system said it.",
            occurrence_count=rnd.randint(1, 20),
            amount_at_stake=amount,
            currency_id=ent.base_currency_id if amount is not None else None,
            legal_entity=ent,
            customer=cust,
            connection_ref=rnd.choice(["", "", "tryton-main", "netsuite-eu"]),
            assignee=rnd.choice([None, None, *users]),
            due_at=opened + timedelta(hours=72),
            first_seen_at=opened,
            last_seen_at=opened + timedelta(minutes=rnd.randint(0, 600)),
            resolved_at=now if closed else None,
        )

    total = args.open + args.closed
    batch: list[ExceptionCase] = []
    for i in range(total):
        batch.append(case(i, closed=i >= args.open))
        if len(batch) >= INSERT_CHUNK:
            ExceptionCase.objects.bulk_create(batch)
            batch = []
    if batch:
        ExceptionCase.objects.bulk_create(batch)
    with connection.cursor() as cur:
        # What autovacuum does soon after a bulk load: statistics, and the visibility map the
        # counts' index-only scan needs.
        cur.execute("VACUUM ANALYZE exceptions_exceptioncase")


def main() -> None:
    args = parse()
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ["DATABASE_URL"] = f"postgres://postgres@{args.host}:5432/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    if not args.reuse:
        recreate_database(args.database, args.host)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    from exceptions.models import OPEN_STATUSES, ExceptionCase

    t0 = time.perf_counter()
    if args.reuse:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    else:
        load(args)
    open_cases = ExceptionCase.objects.filter(status__in=OPEN_STATUSES).count()
    print(f"loaded {open_cases} open cases in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    client = Client()
    client.force_login(User.objects.get(username="clerk"))  # a real session row, read per request
    for q in QUERIES:  # warm-up: templates compiled, plans cached, pages in the buffer cache
        r = client.get(f"/exceptions/?{q}")
        assert r.status_code == 200, (q, r.status_code)
    timings: dict[str, list[float]] = {q: [] for q in QUERIES}
    all_ms: list[float] = []
    for n in range(args.requests):
        q = QUERIES[n % len(QUERIES)]
        start = time.perf_counter()
        r = client.get(f"/exceptions/?{q}")
        ms = (time.perf_counter() - start) * 1000
        assert r.status_code == 200 and b"Exception queue" in r.content, q
        timings[q].append(ms)
        all_ms.append(ms)
    all_ms.sort()

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(round(p * (len(values) - 1))))], 1)

    slowest = sorted(
        ((q or "(default)", round(statistics.median(v), 1)) for q, v in timings.items()),
        key=lambda x: -x[1],
    )[:5]
    for q, med in slowest:
        print(f"  median {med:7.1f} ms  ?{q}", file=sys.stderr)
    result = {
        "open_cases": open_cases,
        "closed_cases": args.closed,
        "requests": len(all_ms),
        "p50_ms": pct(all_ms, 0.50),
        "p95_ms": pct(all_ms, 0.95),
        "max_ms": round(all_ms[-1], 1),
        "target_p95_ms": 300,
        "met": pct(all_ms, 0.95) < 300,
        "slowest_median_ms": dict(slowest),
        "database": connection.vendor,
        # Other work on the machine moves these figures: the 1-minute load when measuring ended.
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
