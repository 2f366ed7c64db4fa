"""Tax engine, cadences and anchors, rating failures, and service-level properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.drafting import SummaryInfo, draft_period
from billing.periods import Period
from billing.tax import TableTaxEngine, TaxableLine, TaxContext
from billing.terms import ContractTerms, PlanCache, TermsChange, period_ending_in
from exceptions.models import ExceptionCase
from tests.billing.conftest import (
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    lines,
    metric,
    plan,
    send,
    tax_rate,
)

D = Decimal


@pytest.mark.django_db
def test_most_specific_rate_wins_and_exempt_customers_pay_none() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    tax_rate(us, "0.05", name="Default")
    tax_rate(us, "0.0725", jurisdiction="US-CA", name="CA")
    tax_rate(us, "0.00", jurisdiction="US-CA", tax_code="food", name="CA food")
    tax_rate(us, "0.02", tax_code="saas", name="Digital")
    engine = TableTaxEngine()

    def ctx(jurisdiction: str, exempt: bool = False) -> TaxContext:
        return TaxContext(
            legal_entity_id=us.pk,
            jurisdiction=jurisdiction,
            tax_exempt=exempt,
            tax_date=date(2026, 11, 30),
            minor_units=2,
            rounding="ROUND_HALF_UP",
        )

    got = engine.compute(
        context=ctx("US-CA"),
        lines=[
            TaxableLine(D("100.00"), "saas"),
            TaxableLine(D("10.00"), "food"),
            TaxableLine(D("0.10"), "saas"),
        ],
    )
    # CA beats the digital rate (jurisdiction first): 100.10 x 7.25 % = 7.25725 -> 7.26; food at 0 % makes no line
    assert [(t.name, t.taxable_amount, t.amount) for t in got] == [("CA", D("100.10"), D("7.26"))]
    ny = engine.compute(
        context=ctx("US-NY"), lines=[TaxableLine(D("100.00"), "saas"), TaxableLine(D("1"), "x")]
    )
    assert [(t.name, t.amount) for t in ny] == [("Default", D("0.05")), ("Digital", D("2.00"))]
    assert (
        engine.compute(context=ctx("US-CA", exempt=True), lines=[TaxableLine(D("100.00"), "saas")])
        == []
    )


@pytest.mark.django_db
def test_component_tax_codes_and_exempt_customers_on_invoices() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    tax_rate(us, "0.10", tax_code="saas", name="VAT saas")
    tax_rate(us, "0.20", tax_code="support", name="VAT support")
    p = plan(
        "mixed",
        us.base_currency,
        [
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"},
            {"type": "fixed_fee", "code": "support", "amount": "50.00"},
        ],
        meta={"support": {"tax_code": "support"}},
    )
    payer = customer(us, "payer")
    exempt = customer(us, "charity", exempt=True)
    c1, c2 = contract(payer, p, date(2026, 10, 1)), contract(exempt, p, date(2026, 10, 1))
    for cust in (payer, exempt):
        send(cust, "api_calls", datetime(2026, 11, 3, tzinfo=UTC), count=5)
    bill(us, "2026-11")
    inv = invoice_of(c1)
    # api 5.00 at 10 % = 0.50; support 50.00 at 20 % = 10.00
    assert [(t.name, t.amount) for t in inv.tax_lines.order_by("name")] == [
        ("VAT saas", D("0.50")),
        ("VAT support", D("10.00")),
    ]
    assert inv.total == D("65.50")
    assert invoice_of(c2).tax_total == 0 and invoice_of(c2).total == D("55.00")


@pytest.mark.django_db
def test_anchor_day_and_quarterly_cadence_bill_the_period_ending_in_the_month() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "mid")
    qcust = customer(us, "quarter")
    p = plan(
        "basic",
        us.base_currency,
        [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"}],
    )
    mid = contract(cust, p, date(2026, 9, 15), anchor_day=15)
    quarterly = contract(qcust, p, date(2026, 7, 1), cadence="quarterly", anchor_month=1)
    send(
        cust, "api_calls", datetime(2026, 10, 14, 23, tzinfo=UTC), count=2
    )  # 14 Oct: the period 15 Sep - 15 Oct, billed in October
    send(cust, "api_calls", datetime(2026, 11, 14, 23, tzinfo=UTC), count=3)  # 15 Oct - 15 Nov
    send(qcust, "api_calls", datetime(2026, 10, 2, tzinfo=UTC), count=4)
    bill(us, "2026-11")
    inv = invoice_of(mid)
    assert (inv.period_start, inv.period_end) == (date(2026, 10, 15), date(2026, 11, 15))
    assert lines(inv) == [("usage", "api", D("3.00"))]
    assert not quarterly.invoices.exists()  # Q4 ends on 1 January
    bill(us, "2026-12")
    q = invoice_of(quarterly)
    assert (q.period_start, q.period_end, q.total) == (
        date(2026, 10, 1),
        date(2027, 1, 1),
        D("4.00"),
    )


@pytest.mark.django_db
def test_a_contract_that_cannot_be_rated_opens_a_case_and_the_run_goes_on() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("payments", aggregation="sum", value_property="amount", accepts_negative=True)
    ok = customer(us, "ok")
    broken = customer(us, "broken")
    p = plan(
        "pct",
        us.base_currency,
        [{"type": "percentage", "code": "pay", "metric": "payments", "rate": "0.01"}],
        meta={"pay": {"amount_property": "amount"}},
    )
    c_ok, c_broken = contract(ok, p, date(2026, 10, 1)), contract(broken, p, date(2026, 10, 1))
    send(ok, "payments", datetime(2026, 11, 3, tzinfo=UTC), properties={"amount": "10.00"})
    send(broken, "payments", datetime(2026, 11, 3, tzinfo=UTC), properties={"amount": "-5.00"})
    run = bill(us, "2026-11")
    assert run.status == "done"
    assert invoice_of(c_ok).total == D("0.10")
    assert not c_broken.invoices.exists()
    case = ExceptionCase.objects.get(kind="billing_rating_failed")
    assert case.error_code == "negative_value" and case.customer_id == broken.pk


# ---------------------------------------------------------------- properties (pure: no database)

TERMS = ContractTerms(
    contract_id=1,
    customer_id=1,
    start_date=date(2026, 1, 10),
    end_date=None,
    cadence="monthly",
    anchor_day=1,
    anchor_month=1,
    changes=(
        TermsChange(date(2026, 1, 10), 1, {}),
        TermsChange(date(2026, 11, 12), 1, {"discounts": [{"percent_off": "10"}]}),
    ),
)


def _plans() -> PlanCache:
    cache = PlanCache(default_tax_codes={1: "saas"})
    cache.add_version(
        plan_id=1,
        version_id=1,
        effective_from=date(2026, 1, 1),
        component_meta={},
        components=[
            {
                "type": "graduated",
                "code": "api",
                "metric": "api_calls",
                "tiers": [
                    {"up_to": "100", "unit_price": "0.03"},
                    {"up_to": None, "unit_price": "0.0125", "flat_fee": "1"},
                ],
            },
            {"type": "fixed_fee", "code": "platform", "amount": "33.33"},
            {"type": "minimum_commitment", "code": "min", "amount": "5.00"},
        ],
    )
    cache.add_version(
        plan_id=1,
        version_id=2,
        effective_from=date(2026, 11, 20),
        component_meta={},
        components=[
            {
                "type": "volume",
                "code": "api",
                "metric": "api_calls",
                "tiers": [
                    {"up_to": "50", "unit_price": "0.05"},
                    {"up_to": None, "unit_price": "0.01"},
                ],
            },
            {"type": "fixed_fee", "code": "platform", "amount": "40.00"},
        ],
    )
    return cache


class _Usage:
    def __init__(self, quantities: dict[tuple[datetime, datetime], Decimal]) -> None:
        self.q = quantities

    def summary(
        self, customer_id: int, metric: str, start: datetime, end: datetime
    ) -> SummaryInfo | None:
        q = self.q.get((start, end))
        return (
            None if q is None else SummaryInfo(id=hash((start, end)) % 1000, quantity=q, revision=0)
        )

    def event_amounts(self, summary_id: int, property_name: str) -> tuple[Decimal, ...]:
        return ()


NOV = Period(start=date(2026, 11, 1), end=date(2026, 12, 1))
WINDOWS = [
    (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 12, tzinfo=UTC)),
    (datetime(2026, 11, 12, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)),
    (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.decimals(min_value=0, max_value=10**6, places=3), min_size=3, max_size=3),
    st.decimals(min_value=0, max_value=100, places=2),
    st.sampled_from(["ROUND_HALF_UP", "ROUND_HALF_EVEN"]),
)
def test_property_invoice_total_is_the_sum_of_its_lines_and_rating_is_deterministic(
    quantities: list[Decimal], prepaid: Decimal, rounding: str
) -> None:
    usage = _Usage(dict(zip(WINDOWS, quantities, strict=True)))
    first = draft_period(
        terms=TERMS,
        period=NOV,
        tz="UTC",
        plans=_plans(),
        usage=usage,
        minor_units=2,
        rounding=rounding,
        prepaid_balance=prepaid,
    )
    again = draft_period(
        terms=TERMS,
        period=NOV,
        tz="UTC",
        plans=_plans(),
        usage=usage,
        minor_units=2,
        rounding=rounding,
        prepaid_balance=prepaid,
    )
    assert first == again
    assert first.subtotal == sum((ln.amount for ln in first.lines), D(0))
    for ln in first.lines:
        assert ln.amount == ln.amount.quantize(D("0.01"))
    # three pieces (amendment on the 12th, plan version on the 20th), each its own usage line, no window twice
    usage_lines = [ln for ln in first.lines if ln.kind == "usage"]
    assert [(ln.service_start, ln.service_end) for ln in usage_lines] == [
        (date(2026, 11, 1), date(2026, 11, 12)),
        (date(2026, 11, 12), date(2026, 11, 20)),
        (date(2026, 11, 20), date(2026, 12, 1)),
    ]
    assert first.subtotal + first.prepaid_applied >= 0


def test_period_ending_in_a_month_for_every_anchor() -> None:
    month = Period(start=date(2026, 11, 1), end=date(2026, 12, 1))
    for day in range(1, 29):
        terms = ContractTerms(
            contract_id=1,
            customer_id=1,
            start_date=date(2020, 1, 1),
            end_date=None,
            cadence="monthly",
            anchor_day=day,
            anchor_month=1,
            changes=(),
        )
        p = period_ending_in(terms=terms, month=month)
        assert p is not None and month.start < p.end <= month.end and p.end.day == day
        assert p.end - p.start >= timedelta(days=28)


@pytest.mark.django_db
def test_rounding_mode_is_configurable_per_legal_entity() -> None:
    from billing.models import EntityBillingSettings

    up = entity("ll-up", "USD", 2, "UTC")
    even = entity("ll-even", "USD", 2, "UTC")
    EntityBillingSettings.objects.create(legal_entity=even, rounding="ROUND_HALF_EVEN")
    metric("api_calls")
    p = plan(
        "tie",
        up.base_currency,
        [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.025"}],
    )
    results = []
    for ent in (up, even):
        cust = customer(ent, "c")
        c = contract(cust, p, date(2026, 10, 1))
        send(cust, "api_calls", datetime(2026, 11, 3, tzinfo=UTC), count=5)
        bill(ent, "2026-11")
        results.append(invoice_of(c).total)
    # 5 x 0.025 = 0.125: half up 0.13, half even 0.12
    assert results == [D("0.13"), D("0.12")]


@pytest.mark.django_db
def test_admin_adds_plan_versions_through_the_service(client: Client, integrator: User) -> None:
    from billing.models import PricePlanVersion

    us = entity("ll-us", "USD", 2, "UTC")
    p = plan("basic", us.base_currency, [{"type": "fixed_fee", "code": "f", "amount": "1.00"}])
    client.force_login(integrator)
    ok = client.post(
        "/admin/billing/priceplanversion/add/",
        {
            "plan": p.pk,
            "effective_from": "2026-12-01",
            "components": '[{"type": "fixed_fee", "code": "f", "amount": "2.00"}]',
            "component_meta": "{}",
            "note": "price rise",
        },
    )
    assert ok.status_code == 302
    v = PricePlanVersion.objects.get(plan=p, effective_from=date(2026, 12, 1))
    assert v.version == 2
    bad = client.post(
        "/admin/billing/priceplanversion/add/",
        {
            "plan": p.pk,
            "effective_from": "2027-01-01",
            "components": '[{"type": "fixed_fee", "code": "f", "amount": 2.5}]',
            "component_meta": "{}",
            "note": "",
        },
        follow=True,
    )
    assert "Floats are not accepted" in bad.content.decode()
    assert not PricePlanVersion.objects.filter(effective_from=date(2027, 1, 1)).exists()
