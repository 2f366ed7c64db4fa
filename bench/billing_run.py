#!/usr/bin/env python
"""Benchmark: a whole billing run on PostgreSQL, against a raw SQL GROUP BY floor.

    python bench/billing_run.py                     # 10,000 contracts, 1,000,000 events
    python bench/billing_run.py --contracts 500 --events 50000

Builds its own database (default ll_bench_billing, dropped and re-created),
loads contracts on mixed plans and the month's events straight into metering's
tables with COPY (loading is not timed), then times the run as the scheduler
does it: usage summaries (metering.usage_summarize_window), rating, draft
invoices, finalize (gapless numbers, summaries closed, finance events).
The floor is one GROUP BY over the same events. The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported for real after django.setup()
    from billing.periods import Period
    from core.models import LegalEntity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Rows per COPY chunk when loading events (memory vs round trips; loading is untimed).
COPY_CHUNK = 200_000
MONTH = "2026-11"
TZ = "Europe/Berlin"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--contracts", type=int, default=10_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--database", default="ll_bench_billing")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


def recreate_database(name: str, host: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=host, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


PLANS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "starter",
        [
            {
                "type": "per_unit",
                "code": "api",
                "metric": "api_calls",
                "unit_price": "0.002",
                "free_units": "20",
            },
            {"type": "fixed_fee", "code": "platform", "amount": "49.00"},
        ],
    ),
    (
        "growth",
        [
            {
                "type": "graduated",
                "code": "api",
                "metric": "api_calls",
                "tiers": [
                    {"up_to": "30", "unit_price": "0.01"},
                    {"up_to": "100", "unit_price": "0.008", "flat_fee": "2"},
                    {"up_to": None, "unit_price": "0.005"},
                ],
            },
            {"type": "per_unit", "code": "gb", "metric": "storage_gb", "unit_price": "0.10"},
            {"type": "fixed_fee", "code": "platform", "amount": "99.00"},
        ],
    ),
    (
        "scale",
        [
            {
                "type": "volume",
                "code": "gb",
                "metric": "storage_gb",
                "tiers": [
                    {"up_to": "500", "unit_price": "0.12"},
                    {"up_to": None, "unit_price": "0.09", "flat_fee": "10"},
                ],
            },
            {
                "type": "package",
                "code": "api",
                "metric": "api_calls",
                "package_size": "25",
                "package_price": "1.50",
            },
            {"type": "minimum_commitment", "code": "min", "amount": "200.00"},
        ],
    ),
    (
        "seats",
        [
            {"type": "per_unit", "code": "seats", "metric": "seats", "unit_price": "12.00"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.001"},
            {"type": "fixed_fee", "code": "base", "amount": "19.00"},
        ],
    ),
]
METRICS = [("api_calls", "count", ""), ("storage_gb", "sum", "gb"), ("seats", "max", "n")]


@dataclass(frozen=True)
class Loaded:
    """What setup() loaded: the entity and month to bill, and the month's bounds in UTC."""

    entity: LegalEntity
    month: Period
    start: datetime
    end: datetime


def setup(args: argparse.Namespace) -> Loaded:
    from django.core.management import call_command
    from django.db import connection, transaction

    from billing import services
    from billing.models import Contract, TaxRate
    from billing.periods import parse_period, period_bounds_utc
    from core import pgcopy
    from core.actors import Actor
    from core.models import Currency, Customer, LegalEntity
    from metering import partitions
    from metering.models import MetricDefinition, MetricVersion
    from metering.services import metric_create

    call_command("migrate", verbosity=0)
    actor = Actor.system("bench")
    eur = Currency.objects.get_or_create(code="EUR", defaults={"name": "Euro", "minor_units": 2})[0]
    entity = LegalEntity.objects.create(
        code="bench-de", name="Bench GmbH", base_currency=eur, country="DE", timezone=TZ
    )
    TaxRate.objects.create(
        legal_entity=entity, name="USt", rate=Decimal("0.19"), valid_from=date(2020, 1, 1)
    )
    for code, agg, prop in METRICS:
        metric_create(code=code, name=code, aggregation=agg, value_property=prop, actor=actor)
    plans = []
    for code, components in PLANS:
        plan = services.price_plan_create(
            code=code,
            name=code,
            currency=eur,
            actor=actor,
            first_version=services.VersionTerms(
                effective_from=date(2026, 1, 1), components=components
            ),
        )
        plans.append(plan)
    rng = random.Random(args.seed)
    with transaction.atomic():
        customers = Customer.objects.bulk_create(
            [
                Customer(
                    legal_entity=entity, code=f"cust-{i:05d}", name=f"Customer {i}", country="DE"
                )
                for i in range(args.contracts)
            ],
            batch_size=5000,
        )
        contracts = []
        for i, cust in enumerate(customers):
            plan = plans[i % len(plans)]
            overrides = {"discounts": [{"percent_off": "10"}]} if i % 7 == 0 else {}
            start = date(2026, 1, 1) if i % 10 else date(2026, 11, 1 + (i % 20))
            contracts.append(
                Contract(
                    code=f"k-{i:05d}",
                    customer=cust,
                    legal_entity=entity,
                    currency=eur,
                    plan=plan,
                    overrides=overrides,
                    start_date=start,
                    prepaid_balance=Decimal("25.00") if i % 11 == 0 else Decimal(0),
                )
            )
        Contract.objects.bulk_create(contracts, batch_size=5000)

    # events: COPY straight into metering's table (the ingest path has its own benchmark)
    month = parse_period(MONTH)
    start, end = period_bounds_utc(period=month, tz=TZ)
    partitions.ensure_months({(start.year, start.month), (end.year, end.month), (2026, 11)})
    metric_ids = {m.code: m.pk for m in MetricDefinition.objects.all()}
    version_ids = {v.metric_id: v.pk for v in MetricVersion.objects.all()}
    plan_metrics = {
        p.pk: sorted({c["metric"] for c in comps if "metric" in c})
        for p, (_, comps) in zip(plans, PLANS, strict=True)
    }
    pairs = [(c.customer_id, plan_metrics[c.plan_id]) for c in contracts]
    span = (end - start).total_seconds()
    received = (end + timedelta(hours=1)).isoformat()
    loaded = 0
    copy_events = pgcopy.copy_statement(
        "metering_usageevent",
        [
            "source",
            "event_id",
            "customer_ref",
            "customer_id",
            "metric_id",
            "metric_version_id",
            "timestamp",
            "value",
            "properties",
            "received_at",
        ],
    )
    with connection.cursor() as cur:
        while loaded < args.events:
            n = min(COPY_CHUNK, args.events - loaded)
            buf = io.StringIO()
            for k in range(loaded, loaded + n):
                cust_id, metrics = pairs[rng.randrange(len(pairs))]
                code = metrics[rng.randrange(len(metrics))]
                mid = metric_ids[code]
                ts = start + timedelta(seconds=rng.random() * span)
                value = "\\N" if code == "api_calls" else str(rng.randint(1, 20))
                props = (
                    "{}"
                    if code == "api_calls"
                    else ('{"gb": %s}' % value if code == "storage_gb" else '{"n": %s}' % value)
                )
                buf.write(
                    f"app\tev-{k}\tref\t{cust_id}\t{mid}\t{version_ids[mid]}\t{ts.isoformat()}\t{value}\t"
                    f"{props}\t{received}\n"
                )
            pgcopy.copy_in(cur, copy_events, buf.getvalue())
            loaded += n
        cur.execute("ANALYZE metering_usageevent")
    return Loaded(entity=entity, month=month, start=start, end=end)


def main() -> None:
    args = parse()
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    os.environ["DATABASE_URL"] = f"postgres://postgres@{args.host}:5432/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    recreate_database(args.database, args.host)
    import django

    django.setup()
    from django.db import connection

    from billing import services
    from billing.models import FinanceEvent, Invoice, InvoiceLine
    from core.actors import Actor

    t0 = time.perf_counter()
    ctx = setup(args)
    print(
        f"loaded {args.contracts} contracts and {args.events} events in {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )

    # the floor: one GROUP BY over the same events
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        g0 = time.perf_counter()
        cur.execute(
            "SELECT customer_id, metric_id, count(*), sum(value), max(value), max(seq) FROM metering_usageevent "
            'WHERE "timestamp" >= %s AND "timestamp" < %s GROUP BY customer_id, metric_id',
            [ctx.start, ctx.end],
        )
        groups = len(cur.fetchall())
        group_by_seconds = time.perf_counter() - g0

    from billing.services import drafts

    phases: dict[str, float] = {}
    from metering.for_billing import usage_summarize_window as real_summarize

    def timed_summarize(**kwargs: Any) -> Any:
        s0 = time.perf_counter()
        try:
            return real_summarize(**kwargs)
        finally:
            phases["summaries"] = phases.get("summaries", 0.0) + time.perf_counter() - s0

    # the name drafts calls, replaced to time it (drafts imports it from metering.for_billing)
    setattr(drafts, "usage_summarize_window", timed_summarize)
    actor = Actor.system("bench")
    now = datetime(2026, 12, 3, tzinfo=UTC)
    r0 = time.perf_counter()
    run = services.billing_run_request(
        legal_entity=ctx.entity, month=ctx.month, actor=actor, now=now
    )
    run = services.billing_run_execute(run_id=run.pk, actor=actor, now=now)
    phases["drafts_total"] = time.perf_counter() - r0
    f0 = time.perf_counter()
    finalized = services.billing_run_finalize(run=run, actor=actor)
    phases["finalize"] = time.perf_counter() - f0
    run_seconds = time.perf_counter() - r0
    phases["rating_and_drafts"] = phases["drafts_total"] - phases.get("summaries", 0.0)

    invoices = Invoice.objects.filter(billing_run=run).count()
    result = {
        "contracts": args.contracts,
        "events": args.events,
        "summary_groups": groups,
        "invoices": invoices,
        "finalized": len(finalized),
        "lines": InvoiceLine.objects.filter(invoice__billing_run=run).count(),
        "finance_events": FinanceEvent.objects.filter(type="invoice.finalized").count(),
        "run_seconds": round(run_seconds, 2),
        "phases": {k: round(v, 2) for k, v in phases.items()},
        "group_by_seconds": round(group_by_seconds, 3),
        "ratio_vs_group_by": round(run_seconds / group_by_seconds, 1) if group_by_seconds else None,
        "target_seconds": 60,
        "database": connection.vendor,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
