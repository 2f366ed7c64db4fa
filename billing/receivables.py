"""Reads for the customer page and the accounts-receivable ageing (issue 15, item 5).

What is owed is worked out in the database: a document's balance due is its total less
credit memos less payments received (`selectors.invoice_balance_due`, one row at a time),
its due date the issue date plus the contract's payment terms. Ageing sums balances per
customer, currency and bucket in one GROUP BY; nothing is ever summed across currencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.db.models import (
    Count,
    DateField,
    DecimalField,
    ExpressionWrapper,
    F,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce

from billing.models import Contract, DocumentKind, Invoice, InvoiceStatus, Payment
from billing.periods import Cadence, local_date_of, period_bounds_utc, period_containing
from billing.rating import components_from_config
from core.fields import MONEY
from core.models import Currency, Customer, LegalEntity
from exceptions.models import OPEN_STATUSES, ExceptionCase
from metering.for_billing import CustomerMapping, counted_usage_events

ZERO = Value(Decimal(0), output_field=DecimalField(**MONEY))

#: Ageing buckets: (key, label, fewest days past due, most days past due or None).
BUCKETS: tuple[tuple[str, str, int, int | None], ...] = (
    ("current", "Current", -(10**6), 0),
    ("d1_30", "1–30 days", 1, 30),
    ("d31_60", "31–60 days", 31, 60),
    ("d61_90", "61–90 days", 61, 90),
    ("over_90", "Over 90 days", 91, None),
)


class AddDays(Func):
    """A date plus a whole number of days, as a date, in the database (PostgreSQL: `date +
    integer`; SQLite: its `date()` modifier); null when the date is null."""

    output_field = DateField()
    arity = 2

    def as_sql(  # type: ignore[override]  # the stubs' signature has no **extra
        self, compiler: Any, connection: Any, **extra: Any
    ) -> tuple[str, Any]:
        return super().as_sql(
            compiler, connection, template="(%(expressions)s)", arg_joiner=" + ", **extra
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, Any]:
        return super().as_sql(
            compiler,
            connection,
            template="date(%(expressions)s || ' days')",
            arg_joiner=", '+' || ",
            **extra,
        )


def due_on() -> AddDays:
    """A document's due date: its issue date plus its contract's payment terms (null for a
    draft). The one place it is computed: the ageing, the customer page and the invoice and
    print pages (`selectors.invoice_detail`) all annotate it from here."""
    return AddDays(F("issue_date"), F("contract__payment_terms_days"))


def with_balance(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """`qs` annotated with `paid` (payments received), `balance` (what is still owed) and `due`
    (issue date + the contract's payment terms; null for drafts), all computed by the database."""
    paid = (
        Payment.objects.filter(invoice=OuterRef("pk"))
        .order_by()
        .values("invoice")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    return qs.annotate(
        paid=Coalesce(Subquery(paid, output_field=DecimalField(**MONEY)), ZERO),
        balance=ExpressionWrapper(
            F("total") - F("credited_total") - F("paid"), output_field=DecimalField(**MONEY)
        ),
        due=due_on(),
    )


def receivable(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """The documents of `qs` a customer still owes on: finalized invoices and adjustment
    invoices with a balance (drafts, void, paid documents and credit memos owe nothing)."""
    return with_balance(
        qs.filter(
            status=InvoiceStatus.FINALIZED,
            kind__in=[DocumentKind.INVOICE, DocumentKind.ADJUSTMENT],
        )
    ).filter(balance__gt=0)  # type: ignore[misc]  # django-stubs cannot see the annotation


def _bucket(key: str, as_of: date) -> Q:
    """Documents whose days past due (as_of - due) fall in bucket `key`."""
    _, _, low, high = next(b for b in BUCKETS if b[0] == key)
    q = Q(due__gte=as_of - timedelta(days=high)) if high is not None else Q()
    if low > 0:
        q &= Q(due__lte=as_of - timedelta(days=low))
    return q


@dataclass
class AgeingRow:
    """One customer's (or one currency's total) balances in one currency, per bucket."""

    currency: Currency
    buckets: dict[str, Decimal]
    total: Decimal
    documents: int
    customer: Customer | None = None

    @property
    def cells(self) -> list[tuple[str, Decimal]]:
        """(bucket key, amount) in the order of BUCKETS, as the page's columns go."""
        return [(key, self.buckets[key]) for key, *_ in BUCKETS]


@dataclass
class Ageing:
    entity: LegalEntity
    as_of: date
    rows: list[AgeingRow] = field(default_factory=list)  # per customer and currency
    totals: list[AgeingRow] = field(default_factory=list)  # per currency, never across


def ageing(*, entity: LegalEntity, as_of: date) -> Ageing:
    """Aged receivables of `entity` on `as_of`: balances per customer and currency in the
    buckets of BUCKETS (one GROUP BY), and per currency."""
    sums = {key: Coalesce(Sum("balance", filter=_bucket(key, as_of)), ZERO) for key, *_ in BUCKETS}
    grouped = (
        receivable(Invoice.objects.filter(legal_entity=entity, issue_date__lte=as_of))
        .order_by()
        .values("customer_id", "currency_id")
        .annotate(n=Count("id"), total_due=Sum("balance"), **sums)
        .order_by("currency_id", "customer_id")
    )
    raw: list[dict[str, Any]] = [dict(r) for r in grouped]  # bucket keys are not literals
    customers = Customer.objects.in_bulk({r["customer_id"] for r in raw})
    currencies = Currency.objects.in_bulk({r["currency_id"] for r in raw})
    result = Ageing(entity=entity, as_of=as_of)
    by_currency: dict[str, AgeingRow] = {}
    for r in raw:
        cur = currencies[r["currency_id"]]
        buckets = {key: r[key] for key, *_ in BUCKETS}
        result.rows.append(
            AgeingRow(cur, buckets, r["total_due"], r["n"], customer=customers[r["customer_id"]])
        )
        tot = by_currency.setdefault(
            cur.code, AgeingRow(cur, {k: Decimal(0) for k, *_ in BUCKETS}, Decimal(0), 0)
        )
        for key, amount in buckets.items():
            tot.buckets[key] += amount
        tot.total += r["total_due"]
        tot.documents += r["n"]
    result.rows.sort(key=lambda row: (row.currency.code, row.customer.name if row.customer else ""))
    result.totals = [by_currency[code] for code in sorted(by_currency)]
    return result


# --------------------------------------------------------------------------- the customer page


@dataclass(frozen=True)
class Balance:
    currency: Currency
    amount: Decimal
    documents: int
    oldest_due: date | None


@dataclass(frozen=True)
class UsageLine:
    """A usage component of the contract in force and the customer's usage of it so far."""

    contract: Contract
    component: str
    kind: str
    metric: str
    aggregation: str
    quantity: Decimal | None
    events: int
    unit_price: Decimal | None
    period_start: date
    period_end: date


@dataclass(frozen=True)
class CustomerOverview:
    customer: Customer
    contracts: list[Contract]
    documents: list[Invoice]  # with `balance`, `paid` and `due`
    balances: list[Balance]  # per currency
    usage: list[UsageLine]
    cases: list[ExceptionCase]
    mappings: list[CustomerMapping]


def customer_balances(*, customer: Customer) -> list[Balance]:
    """What the customer owes, per currency (one GROUP BY)."""
    rows = list(
        receivable(Invoice.objects.filter(customer=customer))
        .order_by()
        .values("currency_id")
        .annotate(s=Sum("balance"), n=Count("id"), oldest=Min("due"))
        .order_by("currency_id")
    )
    currencies = Currency.objects.in_bulk([r["currency_id"] for r in rows])
    return [Balance(currencies[r["currency_id"]], r["s"], r["n"], r["oldest"]) for r in rows]


def _quantity(
    aggregation: str, n: int, total: Decimal | None, top: Decimal | None
) -> Decimal | None:
    """The usage figure so far for count, sum and max metrics (None for the others: unique and
    latest values are worked out when the period is rated)."""
    if aggregation == "count":
        return Decimal(n)
    if aggregation == "sum":
        return total or Decimal(0)
    if aggregation == "max":
        return top or Decimal(0)
    return None


def _usage(contract: Contract, now: datetime) -> list[UsageLine]:
    """Usage so far in the contract's current period (in its entity's time zone), per usage
    component of the plan version in force: one GROUP BY per contract over its metrics."""
    tz = contract.legal_entity.timezone
    today = local_date_of(ts=now, tz=tz)
    versions = list(contract.plan.versions.order_by("-effective_from"))
    version = next((v for v in versions if v.effective_from <= today), None)
    if version is None:
        return []
    period = period_containing(
        local_date=today,
        cadence=cast(Cadence, contract.cadence),
        anchor_day=contract.anchor_day,
        anchor_month=contract.anchor_month,
    )
    start, end = period_bounds_utc(period=period, tz=tz)
    components = [c for c in components_from_config(version.components) if getattr(c, "metric", "")]
    rows = (
        counted_usage_events()
        .filter(
            customer=contract.customer,
            metric__code__in=[getattr(c, "metric") for c in components],
            timestamp__gte=start,
            timestamp__lt=end,
        )
        .order_by()
        .values("metric__code", "metric_version__aggregation")
        .annotate(n=Count("seq"), total=Sum("value"), top=Max("value"))
    )
    per_metric: dict[str, dict[str, object]] = {}
    for r in rows:  # a metric's versions may differ; its latest aggregation names the figure
        m = per_metric.setdefault(r["metric__code"], {"n": 0, "total": None, "top": None})
        m["aggregation"] = r["metric_version__aggregation"]
        m["n"] = cast(int, m["n"]) + r["n"]
        if r["total"] is not None:
            m["total"] = cast(Decimal, m["total"] or Decimal(0)) + r["total"]
        if r["top"] is not None:
            m["top"] = max(cast(Decimal, m["top"] or r["top"]), r["top"])
    lines = []
    for comp in components:
        metric = cast(str, getattr(comp, "metric"))
        m = per_metric.get(metric, {})
        aggregation = cast(str, m.get("aggregation", ""))
        n = cast(int, m.get("n", 0))
        lines.append(
            UsageLine(
                contract=contract,
                component=comp.code,
                kind=str(comp.__struct_config__.tag or type(comp).__name__).replace("_", " "),
                metric=metric,
                aggregation=aggregation,
                quantity=_quantity(
                    aggregation or "count",
                    n,
                    cast("Decimal | None", m.get("total")),
                    cast("Decimal | None", m.get("top")),
                ),
                events=n,
                unit_price=getattr(comp, "unit_price", None),
                period_start=period.start,
                period_end=period.end - timedelta(days=1),
            )
        )
    return lines


def customer_overview(*, customer: Customer, now: datetime) -> CustomerOverview:
    """Everything the customer page shows; `now` places "this period" of each contract."""
    today = local_date_of(ts=now, tz=customer.legal_entity.timezone)
    contracts = list(
        Contract.objects.filter(customer=customer)
        .select_related("plan", "legal_entity", "currency")
        .order_by("-start_date", "code")
    )
    documents = list(
        with_balance(Invoice.objects.filter(customer=customer))
        .select_related("currency", "contract")
        .order_by("-issue_date", "-id")[:100]
    )
    active = [
        c for c in contracts if c.start_date <= today and (c.end_date is None or c.end_date > today)
    ]
    usage = [line for c in active for line in _usage(c, now)]
    cases = list(
        ExceptionCase.objects.filter(customer=customer, status__in=OPEN_STATUSES).order_by(
            "-last_seen_at"
        )
    )
    mappings = list(
        CustomerMapping.objects.filter(customer=customer).order_by("source", "customer_ref")
    )
    return CustomerOverview(
        customer=customer,
        contracts=contracts,
        documents=documents,
        balances=customer_balances(customer=customer),
        usage=usage,
        cases=cases,
        mappings=mappings,
    )


def days_past_due(due: date | datetime | None, as_of: date) -> int | None:
    if due is None:
        return None
    day = due.date() if isinstance(due, datetime) else due
    return (as_of - day).days
