"""Demo usage and billing: metrics, identity mappings, plans, contracts, a month of
events sent through the real ingest service, and last month's billing run.

Everything goes through the services, so the demo's audit trail, control totals,
exception cases and invoices are what production would produce. Idempotent: a
second call adds nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing import services
from billing.models import Contract, EntityBillingSettings, Invoice, PricePlan, TaxRate
from billing.periods import parse_period
from core.errors import AppError
from core.models import Customer, LegalEntity
from core.actors import Actor
from metering.for_billing import (
    CustomerMapping,
    MetricDefinition,
    customer_mapping_create,
    metric_create,
    usage_ingest,
)

ACTOR = Actor.system("demo data")
SOURCE = "app"
INGEST_BATCH = 500
DUPLICATES = 25

METRICS = [
    # code, name, unit, aggregation, value property
    ("api_calls", "API calls", "call", "count", ""),
    ("storage_gb", "Storage", "GB", "max", "gb"),
    ("seats", "Active seats", "seat", "unique_count", "user_id"),
    ("payments", "Payment volume", "USD", "sum", "amount"),
]

PLANS: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    # plan code: (name, currency, components)
    "growth-usd": (
        "Growth (USD)",
        "USD",
        [
            {
                "type": "fixed_fee",
                "code": "platform",
                "amount": "99.00",
                "description": "Platform fee",
            },
            {
                "type": "graduated",
                "code": "api",
                "metric": "api_calls",
                "free_units": "1000",
                "tiers": [
                    {"up_to": "10000", "unit_price": "0.002"},
                    {"up_to": None, "unit_price": "0.001"},
                ],
            },
            {
                "type": "package",
                "code": "storage",
                "metric": "storage_gb",
                "package_size": "100",
                "package_price": "25.00",
            },
            {"type": "per_unit", "code": "seats", "metric": "seats", "unit_price": "12.00"},
        ],
    ),
    "payments-usd": (
        "Payments (USD)",
        "USD",
        [
            {
                "type": "percentage",
                "code": "fees",
                "metric": "payments",
                "rate": "0.029",
                "fixed_fee": "0.30",
                "min_fee": "0.50",
                "max_fee": "25.00",
            },
            {"type": "minimum_commitment", "code": "minimum", "amount": "50.00"},
        ],
    ),
    "scale-eur": (
        "Scale (EUR)",
        "EUR",
        [
            {"type": "fixed_fee", "code": "platform", "amount": "149.00"},
            {
                "type": "volume",
                "code": "api",
                "metric": "api_calls",
                "tiers": [
                    {"up_to": "5000", "unit_price": "0.003"},
                    {"up_to": None, "unit_price": "0.0015"},
                ],
            },
        ],
    ),
    "standard-jpy": (
        "Standard (JPY)",
        "JPY",
        [
            {"type": "fixed_fee", "code": "platform", "amount": "15000"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.3"},
        ],
    ),
    "standard-bhd": (
        "Standard (BHD)",
        "BHD",
        [
            {"type": "fixed_fee", "code": "platform", "amount": "45.500"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.0015"},
        ],
    ),
}

# customer code -> plan code
CONTRACTS = {
    "acme": "growth-usd",
    "globex": "payments-usd",
    "initech": "growth-usd",
    "muster": "scale-eur",
    "beispiel": "scale-eur",
    "yamada": "standard-jpy",
    "manama": "standard-bhd",
}
# Each entity's part of its document numbers (US-INV-2026-000001): unique in the group.
DOCUMENT_PREFIXES = {"ll-us": "US", "ll-de": "DE", "ll-jp": "JP", "ll-bh": "BH"}
# Tax rates as fractions (0.0725 = 7.25 %).
TAX = [
    ("ll-us", "US-CA", "0.0725", "CA sales tax"),
    ("ll-us", "US-NY", "0.04", "NY sales tax"),
    ("ll-de", "DE", "0.19", "USt 19 %"),
    ("ll-de", "AT", "0.20", "USt AT 20 %"),
    ("ll-jp", "JP", "0.10", "JCT 10 %"),
    ("ll-bh", "BH", "0.10", "VAT BH 10 %"),
]


@dataclass(frozen=True)
class DemoBillingResult:
    events_sent: int
    runs: list[str]
    invoices: int


def customer_ref(customer: Customer) -> str:
    return f"acct_{customer.code}"


def _ensure_catalogue() -> None:
    for code, name, unit, aggregation, prop in METRICS:
        if not MetricDefinition.objects.filter(code=code).exists():
            metric_create(
                code=code,
                name=name,
                unit=unit,
                aggregation=aggregation,
                value_property=prop,
                actor=ACTOR,
            )
    for customer in Customer.objects.select_related("legal_entity"):
        if not CustomerMapping.objects.filter(
            source=SOURCE, customer_ref=customer_ref(customer)
        ).exists():
            customer_mapping_create(
                source=SOURCE, customer_ref=customer_ref(customer), customer=customer, actor=ACTOR
            )
    for entity_code, prefix in DOCUMENT_PREFIXES.items():
        EntityBillingSettings.objects.get_or_create(
            legal_entity=LegalEntity.objects.get(code=entity_code),
            defaults={"document_prefix": prefix},
        )
    for entity_code, jurisdiction, rate, name in TAX:
        entity = LegalEntity.objects.get(code=entity_code)
        TaxRate.objects.get_or_create(
            legal_entity=entity,
            jurisdiction=jurisdiction,
            tax_code="",
            defaults={"name": name, "rate": Decimal(rate), "valid_from": date(2020, 1, 1)},
        )


def _ensure_contracts(start: date) -> None:
    from core.models import Currency

    for code, (name, currency, components) in PLANS.items():
        if not PricePlan.objects.filter(code=code).exists():
            services.price_plan_create(
                code=code,
                name=name,
                currency=Currency.objects.get(code=currency),
                actor=ACTOR,
                default_tax_code="saas",
                first_version=services.VersionTerms(
                    effective_from=date(2020, 1, 1), components=components, note="demo"
                ),
            )
    for customer_code, plan_code in CONTRACTS.items():
        customer = Customer.objects.get(code=customer_code)
        if not Contract.objects.filter(customer=customer).exists():
            services.contract_create(
                code=f"{customer_code}-2026",
                customer=customer,
                plan=PricePlan.objects.get(code=plan_code),
                start_date=start,
                actor=ACTOR,
            )


def _events(now: datetime, start: datetime) -> list[dict[str, object]]:
    """A deterministic spread of events between `start` and `now`, plus a few that show the exception paths."""
    rng = random.Random(20261124)
    span = (now - start).total_seconds()
    events: list[dict[str, object]] = []
    customers = list(Customer.objects.order_by("code"))
    for n in range(3000):
        c = customers[n % len(customers)]
        ts = start + timedelta(seconds=span * n / 3000)
        metric = ("api_calls", "api_calls", "api_calls", "storage_gb", "seats", "payments")[
            (n // len(customers)) % 6
        ]
        props: dict[str, object] = {}
        if metric == "storage_gb":
            props = {"gb": str(rng.randint(20, 260))}
        elif metric == "seats":
            props = {"user_id": f"u{rng.randint(1, 14)}"}
        elif metric == "payments":
            props = {"amount": f"{rng.randint(500, 90000) / 100:.2f}"}
        events.append(
            {
                "event_id": f"demo-{n}",
                "source": SOURCE,
                "customer_ref": customer_ref(c),
                "metric": metric,
                "timestamp": ts.isoformat(),
                "properties": props,
            }
        )
    # The exception paths: an unmapped account (held), an unknown metric and a bad value (rejected).
    events.append(
        {
            "event_id": "demo-unmapped-1",
            "source": SOURCE,
            "customer_ref": "acct_newco",
            "metric": "api_calls",
            "timestamp": (now - timedelta(hours=2)).isoformat(),
        }
    )
    events.append(
        {
            "event_id": "demo-bad-1",
            "source": SOURCE,
            "customer_ref": "acct_acme",
            "metric": "api_cals",
            "timestamp": (now - timedelta(hours=2)).isoformat(),
        }
    )
    events.append(
        {
            "event_id": "demo-bad-2",
            "source": SOURCE,
            "customer_ref": "acct_acme",
            "metric": "storage_gb",
            "timestamp": (now - timedelta(hours=2)).isoformat(),
            "properties": {"gb": "lots"},
        }
    )
    return events


def load_demo_billing(*, now: datetime | None = None) -> DemoBillingResult:
    now = now or timezone.now()
    this_month = parse_period(f"{now:%Y-%m}")
    last_month = parse_period(f"{this_month.start - timedelta(days=1):%Y-%m}")
    _ensure_catalogue()
    _ensure_contracts(last_month.start)

    sent = 0
    if not Invoice.objects.exists():
        # Only inside the accepted window (EVENT_MAX_AGE_DAYS): the last days of last month and this month so far.
        start = max(
            datetime.combine(last_month.start, datetime.min.time(), tzinfo=UTC),
            now - timedelta(days=30),
        )
        events = _events(now - timedelta(minutes=5), start)
        # The first events are sent twice, as a retrying producer would: they come back as duplicates.
        events += events[:DUPLICATES]
        for i in range(0, len(events), INGEST_BATCH):
            chunk = events[i : i + INGEST_BATCH]
            usage_ingest(items=[(e, e) for e in chunk], actor=ACTOR, channel="native", now=now)
            sent += len(chunk)

    runs = []
    for entity in LegalEntity.objects.order_by("code"):
        try:
            run = services.billing_run_request(
                legal_entity=entity, month=last_month, actor=ACTOR, now=now
            )
        except (
            AppError
        ) as exc:  # the grace window may not have passed yet, or a run is going: say so
            runs.append(f"{entity.code} {last_month.start:%Y-%m}: not run ({exc})")
            continue
        if run.status != "done":
            run = services.billing_run_execute(run_id=run.pk, actor=ACTOR)
        runs.append(f"{entity.code} {run.label}: {run.status}")
        # Finalize the US drafts so the demo shows both numbered invoices and drafts waiting for approval.
        if entity.code == "ll-us":
            drafts = Invoice.objects.filter(billing_run=run, status="draft").values_list(
                "pk", flat=True
            )
            services.invoices_finalize(invoice_ids=list(drafts), actor=ACTOR)
    return DemoBillingResult(events_sent=sent, runs=runs, invoices=Invoice.objects.count())
