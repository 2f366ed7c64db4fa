"""End to end: events through metering -> summaries -> billing run -> drafts -> finalize, to the cent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing import services
from billing.periods import parse_period
from core.errors import AppError
from billing.models import FinanceEvent, Invoice
from exceptions.models import AuditEntry
from tests.billing.conftest import (
    ACTOR,
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
pytestmark = pytest.mark.django_db

API = {
    "type": "per_unit",
    "code": "api",
    "metric": "api_calls",
    "unit_price": "0.002",
    "free_units": "1000",
}
FEE = {"type": "fixed_fee", "code": "platform", "amount": "99.00"}


def test_usage_and_fees_in_advance_with_tax_to_the_cent() -> None:
    us = entity("ll-us", "USD", 2, "America/New_York")
    metric("api_calls")
    acme = customer(us, "acme", jurisdiction="US-CA")
    tax_rate(us, "0.0725", jurisdiction="US-CA", name="CA sales tax")
    c = contract(acme, plan("basic", us.base_currency, [API, FEE]), date(2026, 11, 1))
    send(acme, "api_calls", datetime(2026, 11, 10, 12, tzinfo=UTC), count=1500)

    run = bill(us, "2026-11")

    assert run.status == "done" and run.invoices_created == 1
    inv = invoice_of(c)
    # 1500 calls - 1000 free = 500 x 0.002 = 1.00; platform fee Nov (first period) + Dec in advance
    assert lines(inv) == [
        ("usage", "api", D("1.00")),
        ("fixed_fee", "platform", D("99.00")),
        ("fixed_fee", "platform", D("99.00")),
    ]
    assert [(ln.service_start, ln.service_end) for ln in inv.lines.order_by("position")][1:] == [
        (date(2026, 11, 1), date(2026, 12, 1)),
        (date(2026, 12, 1), date(2027, 1, 1)),
    ]
    assert inv.subtotal == D("199.00")
    # 199.00 x 7.25 % = 14.4275 -> 14.43
    assert inv.tax_total == D("14.43") and inv.total == D("213.43")
    usage_line = inv.lines.get(kind="usage")
    assert usage_line.usage_summary is not None and usage_line.usage_summary.quantity == D("1500")
    assert usage_line.quantity == D("500") and usage_line.unit_price == D("0.002")

    final = services.invoice_finalize(invoice=inv, actor=ACTOR)
    assert final.issue_date is not None
    assert final.number == f"INV-{final.issue_date.year}-000001" and final.status == "finalized"
    usage_line.usage_summary.refresh_from_db()
    assert usage_line.usage_summary.closed_at is not None
    event = FinanceEvent.objects.get(type="invoice.finalized")
    assert event.payload["document"]["number"] == final.number
    assert event.payload["document"]["total"] == "213.43"
    assert [ln["amount"] for ln in event.payload["lines"]] == ["1.00", "99.00", "99.00"]
    assert AuditEntry.objects.filter(action="invoice.finalize", object_id=str(inv.pk)).count() == 1


def test_rerun_never_creates_a_second_invoice() -> None:
    us = entity("ll-us", "USD", 2, "America/New_York")
    metric("api_calls")
    acme = customer(us, "acme")
    c = contract(acme, plan("basic", us.base_currency, [API]), date(2026, 10, 1))
    send(acme, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=1200)
    bill(us, "2026-11")
    again = bill(us, "2026-11")
    assert again.status == "done"
    assert Invoice.objects.filter(contract=c).count() == 1
    assert invoice_of(c).subtotal == D("0.40")


def test_zero_and_three_decimal_currencies_round_once_per_line() -> None:
    jp = entity("ll-jp", "JPY", 0, "Asia/Tokyo", country="JP")
    kw = entity("ll-kw", "KWD", 3, "Asia/Kuwait", country="KW")
    metric("api_calls")
    yen = customer(jp, "sakura")
    fils = customer(kw, "gulf")
    c_jp = contract(
        yen,
        plan(
            "jp",
            jp.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.5"}],
        ),
        date(2026, 10, 1),
    )
    c_kw = contract(
        fils,
        plan(
            "kw",
            kw.base_currency,
            [
                {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.0125"},
                {"type": "fixed_fee", "code": "base", "amount": "10.125"},
            ],
        ),
        date(2026, 10, 1),
    )
    send(yen, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), count=3)
    send(fils, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), count=13)
    bill(jp, "2026-11")
    bill(kw, "2026-11")
    # 3 x 0.5 = 1.5 JPY -> 2 (half up, no minor unit)
    assert lines(invoice_of(c_jp)) == [("usage", "api", D("2"))]
    # 13 x 0.0125 = 0.1625 KWD -> 0.163; December's fee in advance 10.125
    kw_inv = invoice_of(c_kw)
    assert lines(kw_inv) == [("usage", "api", D("0.163")), ("fixed_fee", "base", D("10.125"))]
    assert kw_inv.total == D("10.288")
    final = services.invoice_finalize(invoice=kw_inv, actor=ACTOR)
    payload = FinanceEvent.objects.get(payload__document__id=final.pk).payload
    assert payload["document"]["total"] == "10.288" and payload["lines"][0]["amount"] == "0.163"


def test_event_late_on_the_31st_utc_belongs_to_the_entitys_local_month() -> None:
    jp = entity("ll-jp", "JPY", 0, "Asia/Tokyo", country="JP")
    metric("api_calls")
    cust = customer(jp, "sakura")
    c = contract(
        cust,
        plan(
            "jp",
            jp.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "100"}],
        ),
        date(2026, 9, 1),
    )
    send(
        cust, "api_calls", datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    )  # 1 Nov 08:30 in Tokyo: November
    send(
        cust, "api_calls", datetime(2026, 10, 31, 14, 59, tzinfo=UTC), count=2
    )  # 31 Oct 23:59 Tokyo: October
    send(
        cust, "api_calls", datetime(2026, 11, 30, 15, 30, tzinfo=UTC), count=4
    )  # 1 Dec 00:30 Tokyo: December
    bill(jp, "2026-11")
    inv = invoice_of(c)
    assert lines(inv) == [("usage", "api", D("100"))]
    summary = inv.lines.get().usage_summary
    assert summary is not None
    assert (summary.period_start, summary.period_end) == (
        datetime(2026, 10, 31, 15, tzinfo=UTC),
        datetime(2026, 11, 30, 15, tzinfo=UTC),
    )


def test_dst_month_window_is_local_midnight_to_local_midnight() -> None:
    de = entity("ll-de", "EUR", 2, "Europe/Berlin", country="DE")
    metric("api_calls")
    cust = customer(de, "berlin")
    c = contract(
        cust,
        plan(
            "de",
            de.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"}],
        ),
        date(2026, 1, 1),
    )
    send(cust, "api_calls", datetime(2026, 2, 28, 23, 30, tzinfo=UTC))  # 1 Mar 00:30 CET: March
    send(
        cust, "api_calls", datetime(2026, 3, 31, 21, 30, tzinfo=UTC), count=2
    )  # 31 Mar 23:30 CEST: March
    send(
        cust, "api_calls", datetime(2026, 3, 31, 22, 30, tzinfo=UTC), count=4
    )  # 1 Apr 00:30 CEST: April
    send(
        cust, "api_calls", datetime(2026, 2, 28, 22, 30, tzinfo=UTC), count=8
    )  # 28 Feb 23:30 CET: February
    bill(de, "2026-03")
    inv = invoice_of(c)
    assert lines(inv) == [("usage", "api", D("3.00"))]
    s = inv.lines.get().usage_summary
    assert s is not None
    # 743 hours: the month lost one to summer time
    assert (s.period_end - s.period_start).total_seconds() == 743 * 3600


def test_amendment_mid_period_rates_each_part_under_its_terms_and_counts_usage_once() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    cheap = plan(
        "cheap",
        us.base_currency,
        [
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.01"},
            {"type": "fixed_fee", "code": "platform", "amount": "30.00"},
        ],
    )
    dear = plan(
        "dear",
        us.base_currency,
        [
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.02"},
            {"type": "fixed_fee", "code": "platform", "amount": "60.00"},
        ],
    )
    c = contract(cust, cheap, date(2026, 10, 1))
    services.contract_amend(
        contract=c, effective_from=date(2026, 11, 16), plan=dear, reason="upgrade", actor=ACTOR
    )
    send(cust, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=100)
    send(
        cust, "api_calls", datetime(2026, 11, 15, 23, 59, 59, tzinfo=UTC), count=1
    )  # last second of the old terms
    send(
        cust, "api_calls", datetime(2026, 11, 16, tzinfo=UTC), count=50
    )  # first second of the new terms
    bill(us, "2026-11")
    inv = invoice_of(c)
    # 101 x 0.01 = 1.01 (1-16 Nov); 50 x 0.02 = 1.00 (16 Nov-1 Dec); December's fee in advance on the new plan
    assert lines(inv) == [
        ("usage", "api", D("1.01")),
        ("usage", "api", D("1.00")),
        ("fixed_fee", "platform", D("60.00")),
    ]
    counts = [
        ln.usage_summary and ln.usage_summary.event_count
        for ln in inv.lines.filter(kind="usage").order_by("position")
    ]
    assert counts == [101, 50]


def test_amendment_inside_an_invoiced_period_is_refused() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    p = plan("basic", us.base_currency, [API])
    c = contract(cust, p, date(2026, 10, 1))
    bill(us, "2026-11")
    with pytest.raises(AppError) as exc:
        services.contract_amend(
            contract=c, effective_from=date(2026, 11, 20), overrides={}, reason="late", actor=ACTOR
        )
    assert exc.value.code == "billing_amendment_in_billed_period"


def test_ending_a_contract_on_or_before_an_amendment_is_refused() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    p = plan("basic", us.base_currency, [API])
    dear = plan("dear", us.base_currency, [{**API, "unit_price": "0.004"}])
    c = contract(cust, p, date(2026, 10, 1))
    services.contract_amend(
        contract=c, effective_from=date(2026, 12, 10), plan=dear, reason="up", actor=ACTOR
    )
    for end in (date(2026, 12, 10), date(2026, 12, 1)):
        with pytest.raises(AppError) as exc:
            services.contract_end(contract=c, end_date=end, reason="churn", actor=ACTOR)
        assert exc.value.code == "billing_invalid_contract"
        assert "2026-12-10" in str(exc.value)
    c.refresh_from_db()
    assert c.end_date is None
    ended = services.contract_end(
        contract=c, end_date=date(2026, 12, 11), reason="churn", actor=ACTOR
    )
    assert ended.end_date == date(2026, 12, 11)


def test_fixed_fee_prorated_by_day_for_start_and_end_inside_the_period() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    cust = customer(us, "acme")
    c = contract(
        cust,
        plan(
            "fee", us.base_currency, [{"type": "fixed_fee", "code": "platform", "amount": "90.00"}]
        ),
        date(2026, 11, 11),
        end_date=date(2026, 12, 21),
    )
    bill(us, "2026-11")
    # November from the 11th: 20/30 x 90 = 60.00; December until the 21st (exclusive): 20/31 x 90 = 58.0645 -> 58.06
    assert lines(invoice_of(c)) == [
        ("fixed_fee", "platform", D("60.00")),
        ("fixed_fee", "platform", D("58.06")),
    ]
    bill(us, "2026-12")
    dec = invoice_of(c, period_start=date(2026, 12, 1))
    assert lines(dec) == []  # fees already billed in advance; nothing after the end date
    bill(us, "2027-01")
    assert not Invoice.objects.filter(contract=c, period_start=date(2027, 1, 1)).exists()


def test_billing_before_the_grace_window_is_refused() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    month = parse_period("2026-11")
    with pytest.raises(AppError) as exc:
        services.billing_run_request(
            legal_entity=us, month=month, actor=ACTOR, now=datetime(2026, 12, 1, 11, 59, tzinfo=UTC)
        )
    assert exc.value.code == "billing_period_not_closed"
    run = services.billing_run_request(
        legal_entity=us, month=month, actor=ACTOR, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    )
    assert run.period_start == date(2026, 11, 1)


def test_second_invoice_for_a_contract_period_is_refused_by_the_database() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(cust, plan("basic", us.base_currency, [API]), date(2026, 10, 1))
    bill(us, "2026-11")
    first = invoice_of(c)
    first.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        first.save()


def test_percentage_component_rates_each_events_amount() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("payments", aggregation="sum", value_property="amount")
    cust = customer(us, "shop")
    c = contract(
        cust,
        plan(
            "pay",
            us.base_currency,
            [
                {
                    "type": "percentage",
                    "code": "pay",
                    "metric": "payments",
                    "rate": "0.029",
                    "fixed_fee": "0.30",
                    "min_fee": "0.50",
                    "max_fee": "5.00",
                }
            ],
        ),
        date(2026, 10, 1),
    )
    for amount in ("10.00", "100.00", "1000.00"):
        send(cust, "payments", datetime(2026, 11, 3, tzinfo=UTC), properties={"amount": amount})
    bill(us, "2026-11")
    # 10 -> 0.29 + 0.30 = 0.59; 100 -> 2.90 + 0.30 = 3.20; 1000 -> 29.30 capped at 5.00; total 8.79
    assert lines(invoice_of(c)) == [("usage", "pay", D("8.79"))]
