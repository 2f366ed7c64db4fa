"""core.formatting: money, rates and quantities as people read them, to the minor unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template

from core.formatting import (
    format_money,
    format_percent,
    format_quantity,
    format_tax_label,
    format_unit_price,
    money_plain,
)
from core.models import Currency

D = Decimal
NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("amount", "code", "minor", "expected"),
    [
        ("1234567.89", "USD", 2, "$1,234,567.89"),
        ("-1234.50", "USD", 2, "($1,234.50)"),
        ("0.01", "USD", 2, "$0.01"),
        ("0", "USD", 2, "$0.00"),
        ("1234.5", "EUR", 2, "€1,234.50"),
        ("-0.07", "EUR", 2, "(€0.07)"),
        ("1500", "JPY", 0, "¥1,500"),
        ("-1234567", "JPY", 0, "(¥1,234,567)"),
        ("1234.567", "BHD", 3, f"BHD{NBSP}1,234.567"),
        ("-0.005", "KWD", 3, f"(KWD{NBSP}0.005)"),
        ("12.3", "KWD", 3, f"KWD{NBSP}12.300"),
    ],
)
def test_money_shows_symbol_minor_units_separators_and_finance_negatives(
    amount: str, code: str, minor: int, expected: str
) -> None:
    assert format_money(D(amount), currency=code, minor_units=minor) == expected


@pytest.mark.parametrize(
    ("amount", "minor", "expected"),
    [
        ("1234.5000", 2, "1234.50"),
        ("-0.1000", 2, "-0.10"),
        ("15000.0000", 0, "15000"),
        ("12.3450", 3, "12.345"),
        ("-0.0000", 2, "0.00"),
    ],
)
def test_machine_money_is_a_plain_decimal_in_minor_units(
    amount: str, minor: int, expected: str
) -> None:
    assert money_plain(D(amount), minor_units=minor) == expected


def test_a_value_finer_than_the_minor_unit_is_shown_rounded_half_up() -> None:
    assert format_money(D("0.125"), currency="USD", minor_units=2) == "$0.13"
    assert format_money(D("1234.5"), currency="JPY", minor_units=0) == "¥1,235"


def test_rates_quantities_and_unit_prices() -> None:
    assert format_percent(D("0.190000")) == f"19{NBSP}%"
    assert format_percent(D("0.072500")) == f"7.25{NBSP}%"
    assert format_percent(D("0")) == f"0{NBSP}%"
    assert format_quantity(D("1500.000000")) == "1,500"
    assert format_quantity(D("0.500000")) == "0.5"
    assert format_quantity(D("-2.250000")) == "-2.25"
    assert format_unit_price(D("0.003000"), currency="EUR", minor_units=2) == "€0.003"
    assert format_unit_price(D("149.000000"), currency="USD", minor_units=2) == "$149.00"
    assert format_unit_price(D("0.300000"), currency="JPY", minor_units=0) == "¥0.3"
    assert format_unit_price(D("0.0015"), currency="BHD", minor_units=3) == f"BHD{NBSP}0.0015"


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        format_money(1.1, currency="USD", minor_units=2)


@pytest.mark.django_db
def test_template_filters_use_the_currency_row() -> None:
    bhd = Currency.objects.get_or_create(
        code="BHD", defaults={"name": "Bahraini Dinar", "minor_units": 3}
    )[0]
    out = Template(
        "{% load ledgerline %}{{ a|money:cur }}|{{ r|percent }}|{{ q|quantity }}|{{ n|money:cur }}"
    ).render(Context({"a": D("-1234.5"), "cur": bhd, "r": D("0.1"), "q": D("3.000000"), "n": None}))
    assert out == f"(BHD{NBSP}1,234.500)|10{NBSP}%|3|"
    with pytest.raises(TypeError):
        Template("{% load ledgerline %}{{ a|money:'USD' }}").render(Context({"a": D("1")}))


def test_a_tax_label_states_its_rate_once() -> None:
    assert format_tax_label("VAT", D("0.190000")) == f"VAT 19{NBSP}%"
    assert format_tax_label("JCT 10 %", D("0.100000")) == "JCT 10 %"  # the demo's names
    assert format_tax_label(f"USt 19{NBSP}%", D("0.19")) == f"USt 19{NBSP}%"
    assert format_tax_label("GST 5 %", D("0.10")) == f"GST 5 % 10{NBSP}%"  # a name that disagrees
    assert format_tax_label("", D("0.07")) == f"7{NBSP}%"
    assert format_tax_label("VAT 11 %", D("0.01")) == f"VAT 11 % 1{NBSP}%"  # not the "1 %" of 11
