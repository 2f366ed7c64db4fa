"""billing.rating: table of hand-worked pricing cases, plus config/usage error cases.

Pure: no Django, no database.  Every expected amount is worked out by hand in
the comment beside its case; money is compared as exact Decimals, to the cent
(or yen, or fils).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest

from billing.periods import Period, parse_period, proration_fraction, proration_ratio, split_period
from billing.rating import (
    Cap,
    Component,
    Discount,
    FixedFee,
    GraduatedPrice,
    Overrides,
    PerUnitPrice,
    PriceOverride,
    RatingConfigError,
    RatingInputError,
    RatingResult,
    Segment,
    Tier,
    Usage,
    component_from_dict,
    components_from_config,
    overrides_from_dict,
    rate_period,
    rate_segments,
)

D = Decimal


def U(quantity: str | int) -> Usage:
    return Usage(quantity=D(quantity))


def E(*amounts: str) -> Usage:
    return Usage(quantity=D(len(amounts)), event_amounts=tuple(D(a) for a in amounts))


# ---------------------------------------------------------------- plan fragments (JSON form)

API = {"type": "per_unit", "code": "api", "metric": "api", "unit_price": "0.002"}
STORAGE = {  # graduated: 0-100 @0.10, 100-1000 @0.08 (+2 flat), >1000 @0.05 (+5 flat)
    "type": "graduated",
    "code": "storage",
    "metric": "gb",
    "tiers": [
        {"up_to": "100", "unit_price": "0.10"},
        {"up_to": "1000", "unit_price": "0.08", "flat_fee": "2"},
        {"up_to": None, "unit_price": "0.05", "flat_fee": "5"},
    ],
}
SEATS = {  # volume: <=10 @12, <=50 @10 (+20 flat), >50 @8 (+50 flat)
    "type": "volume",
    "code": "seats",
    "metric": "seats",
    "tiers": [
        {"up_to": "10", "unit_price": "12.00"},
        {"up_to": "50", "unit_price": "10.00", "flat_fee": "20"},
        {"up_to": None, "unit_price": "8.00", "flat_fee": "50"},
    ],
}
SMS = {
    "type": "package",
    "code": "sms",
    "metric": "sms",
    "package_size": "1000",
    "package_price": "5.00",
}
PAY = {  # 2.9% + 0.30 per payment, at least 0.50, at most 25.00
    "type": "percentage",
    "code": "pay",
    "metric": "payments",
    "rate": "0.029",
    "fixed_fee": "0.30",
    "min_fee": "0.50",
    "max_fee": "25.00",
}
PLATFORM = {"type": "fixed_fee", "code": "platform", "amount": "300.00"}
MINIMUM = {"type": "minimum_commitment", "code": "min", "amount": "500.00"}


def w(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


Line = tuple[str, str | None, str]  # (kind, component, amount)


@dataclass(frozen=True)
class Case:
    id: str
    components: list[dict[str, Any]]
    usages: dict[str, Usage]
    lines: list[Line]
    subtotal: str
    overrides: dict[str, Any] | None = None
    proration: Fraction | Decimal = Fraction(1)
    prepaid: str = "0"
    remaining: str | None = None
    minor_units: int = 2
    rounding: str = ROUND_HALF_UP
    # amendments: each {"components", "usages", "proration", "overrides"?, "period"?}
    segments: list[dict[str, Any]] = field(default_factory=list)


CASES = [
    # ------------------------------------------------------------ per unit
    # 1500 x 0.002 = 3.00
    Case("per_unit", [API], {"api": U(1500)}, [("usage", "api", "3.00")], "3.00"),
    # 0 x 0.002 = 0.00 (the line is still there, at zero)
    Case("per_unit zero usage", [API], {"api": U(0)}, [("usage", "api", "0.00")], "0.00"),
    # metric absent from usages = zero usage
    Case("per_unit no usage row", [API], {}, [("usage", "api", "0.00")], "0.00"),
    # 1234.5678 x 0.002 = 2.4691356 -> 2.47
    Case(
        "per_unit fractional qty",
        [API],
        {"api": U("1234.5678")},
        [("usage", "api", "2.47")],
        "2.47",
    ),
    # 1000 included: (1500 - 1000) x 0.002 = 1.00
    Case(
        "per_unit included units",
        [w(API, free_units="1000")],
        {"api": U(1500)},
        [("usage", "api", "1.00")],
        "1.00",
    ),
    # 800 used, 1000 included: nothing billable
    Case(
        "per_unit under included units",
        [w(API, free_units="1000")],
        {"api": U(800)},
        [("usage", "api", "0.00")],
        "0.00",
    ),
    # ------------------------------------------------------------ package (1000 per 5.00)
    Case("package zero", [SMS], {"sms": U(0)}, [("usage", "sms", "0.00")], "0.00"),
    # 1 unit starts a package: ceil(1/1000) = 1 -> 5.00
    Case("package one unit", [SMS], {"sms": U(1)}, [("usage", "sms", "5.00")], "5.00"),
    # exactly one package: 1 x 5.00
    Case("package boundary", [SMS], {"sms": U(1000)}, [("usage", "sms", "5.00")], "5.00"),
    # one past: ceil(1001/1000) = 2 -> 10.00
    Case("package one past", [SMS], {"sms": U(1001)}, [("usage", "sms", "10.00")], "10.00"),
    # 1500 - 500 included = 1000 -> 1 package = 5.00
    Case(
        "package included units",
        [w(SMS, free_units="500")],
        {"sms": U(1500)},
        [("usage", "sms", "5.00")],
        "5.00",
    ),
    # ------------------------------------------------------------ graduated
    Case("graduated zero", [STORAGE], {"gb": U(0)}, [("usage", "storage", "0.00")], "0.00"),
    # 100 x 0.10 = 10.00 (tier 2 untouched, so no flat fee)
    Case("graduated at up_to", [STORAGE], {"gb": U(100)}, [("usage", "storage", "10.00")], "10.00"),
    # 10.00 + 1 x 0.08 + 2 flat = 12.08
    Case("graduated one past", [STORAGE], {"gb": U(101)}, [("usage", "storage", "12.08")], "12.08"),
    # 10.00 + 0.5 x 0.08 + 2 = 12.04
    Case(
        "graduated half past",
        [STORAGE],
        {"gb": U("100.5")},
        [("usage", "storage", "12.04")],
        "12.04",
    ),
    # 10.00 + 900 x 0.08 + 2 = 84.00
    Case(
        "graduated at 2nd up_to",
        [STORAGE],
        {"gb": U(1000)},
        [("usage", "storage", "84.00")],
        "84.00",
    ),
    # 84.00 + 1 x 0.05 + 5 = 89.05
    Case(
        "graduated 2nd one past",
        [STORAGE],
        {"gb": U(1001)},
        [("usage", "storage", "89.05")],
        "89.05",
    ),
    # 84.00 + 1500 x 0.05 + 5 = 164.00
    Case("graduated deep", [STORAGE], {"gb": U(2500)}, [("usage", "storage", "164.00")], "164.00"),
    # 150 - 50 included = 100 -> 10.00
    Case(
        "graduated included units",
        [w(STORAGE, free_units="50")],
        {"gb": U(150)},
        [("usage", "storage", "10.00")],
        "10.00",
    ),
    # ------------------------------------------------------------ volume
    # zero units: no tier reached, no flat fee
    Case("volume zero", [SEATS], {"seats": U(0)}, [("usage", "seats", "0.00")], "0.00"),
    # 10 x 12.00 = 120.00
    Case("volume at up_to", [SEATS], {"seats": U(10)}, [("usage", "seats", "120.00")], "120.00"),
    # all 11 at 10.00 + 20 flat = 130.00
    Case("volume one past", [SEATS], {"seats": U(11)}, [("usage", "seats", "130.00")], "130.00"),
    # 50 x 10.00 + 20 = 520.00
    Case(
        "volume at 2nd up_to", [SEATS], {"seats": U(50)}, [("usage", "seats", "520.00")], "520.00"
    ),
    # 51 x 8.00 + 50 = 458.00 (cheaper than 50 seats: that is volume pricing)
    Case(
        "volume 2nd one past", [SEATS], {"seats": U(51)}, [("usage", "seats", "458.00")], "458.00"
    ),
    # 15 - 5 included = 10 -> 10 x 12.00 = 120.00
    Case(
        "volume included units",
        [w(SEATS, free_units="5")],
        {"seats": U(15)},
        [("usage", "seats", "120.00")],
        "120.00",
    ),
    # ------------------------------------------------------------ percentage
    # 100.00 x 0.029 + 0.30 = 3.20
    Case(
        "percentage one event", [PAY], {"payments": E("100.00")}, [("usage", "pay", "3.20")], "3.20"
    ),
    # 5.00 x 0.029 + 0.30 = 0.445 -> min 0.50
    Case("percentage min fee", [PAY], {"payments": E("5.00")}, [("usage", "pay", "0.50")], "0.50"),
    # 2000 x 0.029 + 0.30 = 58.30 -> max 25.00
    Case(
        "percentage max fee",
        [PAY],
        {"payments": E("2000.00")},
        [("usage", "pay", "25.00")],
        "25.00",
    ),
    # 3.20 + 0.50 + 25.00 + (10.50 x 0.029 + 0.30 = 0.6045) = 29.3045 -> 29.30
    Case(
        "percentage mixed events",
        [PAY],
        {"payments": E("100.00", "5.00", "2000.00", "10.50")},
        [("usage", "pay", "29.30")],
        "29.30",
    ),
    Case("percentage no events", [PAY], {}, [("usage", "pay", "0.00")], "0.00"),
    # first 2 events free: one charged 3.20
    Case(
        "percentage included events",
        [w(PAY, free_units="2")],
        {"payments": E("100.00", "100.00", "100.00")},
        [("usage", "pay", "3.20")],
        "3.20",
    ),
    # 1.5% of 0.50 = 0.0075 per event, x3 = 0.0225 -> 0.02: fees are summed exact,
    # rounded once (rounding each event would give 0.01 x 3 = 0.03)
    Case(
        "percentage rounds once per line",
        [{"type": "percentage", "code": "pay", "metric": "payments", "rate": "0.015"}],
        {"payments": E("0.50", "0.50", "0.50")},
        [("usage", "pay", "0.02")],
        "0.02",
    ),
    # ------------------------------------------------------------ recurring fixed fee
    Case("fixed fee", [PLATFORM], {}, [("fixed_fee", "platform", "300.00")], "300.00"),
    # started on the 11th of a 30-day month: 300 x 20/30 = 200.00
    Case(
        "fixed fee prorated",
        [PLATFORM],
        {},
        [("fixed_fee", "platform", "200.00")],
        "200.00",
        proration=Fraction(20, 30),
    ),
    # prorate: false ignores the fraction
    Case(
        "fixed fee not prorated",
        [w(PLATFORM, prorate=False)],
        {},
        [("fixed_fee", "platform", "300.00")],
        "300.00",
        proration=Fraction(20, 30),
    ),
    # 99.99 x 11/31 = 1099.89 / 31 = 35.4803... -> 35.48
    Case(
        "fixed fee prorated odd",
        [w(PLATFORM, amount="99.99")],
        {},
        [("fixed_fee", "platform", "35.48")],
        "35.48",
        proration=Fraction(11, 31),
    ),
    # Decimal proration works too: 300 x 0.666...67 = 200.0000...01 -> 200.00
    Case(
        "fixed fee decimal proration",
        [PLATFORM],
        {},
        [("fixed_fee", "platform", "200.00")],
        "200.00",
        proration=proration_fraction(
            period=parse_period("2026-06"), active_from=date(2026, 6, 11), active_to=None
        ),
    ),
    # ------------------------------------------------------------ minimum commitment
    # usage 100000 x 0.002 = 200.00 < 500 -> true-up 300.00; total 500.00
    Case(
        "minimum true-up",
        [API, MINIMUM],
        {"api": U(100000)},
        [("usage", "api", "200.00"), ("minimum_true_up", "min", "300.00")],
        "500.00",
    ),
    # usage 300000 x 0.002 = 600.00 >= 500: no true-up
    Case("minimum met", [API, MINIMUM], {"api": U(300000)}, [("usage", "api", "600.00")], "600.00"),
    # exactly at the minimum: 250000 x 0.002 = 500.00, no zero line
    Case(
        "minimum exact", [API, MINIMUM], {"api": U(250000)}, [("usage", "api", "500.00")], "500.00"
    ),
    # prorated 20/30: 500 x 2/3 = 333.333...; usage 200.00 -> 133.333... -> 133.33
    Case(
        "minimum prorated",
        [API, MINIMUM],
        {"api": U(100000)},
        [("usage", "api", "200.00"), ("minimum_true_up", "min", "133.33")],
        "333.33",
        proration=Fraction(20, 30),
    ),
    # minimum counts api only: storage 150 = 10 + 50 x 0.08 + 2 = 16.00 (not counted);
    # api 200.00 -> true-up 300.00; total 200 + 16 + 300 = 516.00
    Case(
        "minimum on some metrics",
        [API, STORAGE, w(MINIMUM, metrics=["api"])],
        {"api": U(100000), "gb": U(150)},
        [
            ("usage", "api", "200.00"),
            ("usage", "storage", "16.00"),
            ("minimum_true_up", "min", "300.00"),
        ],
        "516.00",
    ),
    # fixed fees do not count towards a usage minimum: 300 + 0 + true-up 500
    Case(
        "minimum ignores fixed fees",
        [API, PLATFORM, MINIMUM],
        {},
        [
            ("usage", "api", "0.00"),
            ("fixed_fee", "platform", "300.00"),
            ("minimum_true_up", "min", "500.00"),
        ],
        "800.00",
    ),
    # ------------------------------------------------------------ negotiated prices
    # 1500 x 0.0015 = 2.25
    Case(
        "override unit price",
        [API],
        {"api": U(1500)},
        [("usage", "api", "2.25")],
        "2.25",
        overrides={"prices": [{"component": "api", "unit_price": "0.0015"}]},
    ),
    # new tiers 0-100 @0.09, >100 @0.04: 9.00 + 50 x 0.04 = 11.00
    Case(
        "override graduated tiers",
        [STORAGE],
        {"gb": U(150)},
        [("usage", "storage", "11.00")],
        "11.00",
        overrides={
            "prices": [
                {
                    "component": "storage",
                    "tiers": [
                        {"up_to": "100", "unit_price": "0.09"},
                        {"up_to": None, "unit_price": "0.04"},
                    ],
                }
            ]
        },
    ),
    # every volume tier at 9.00, flat fees kept: 11 x 9 + 20 = 119.00
    Case(
        "override volume unit price",
        [SEATS],
        {"seats": U(11)},
        [("usage", "seats", "119.00")],
        "119.00",
        overrides={"prices": [{"component": "seats", "unit_price": "9.00"}]},
    ),
    # 100 x 0.025 + 0.30 = 2.80
    Case(
        "override percentage rate",
        [PAY],
        {"payments": E("100.00")},
        [("usage", "pay", "2.80")],
        "2.80",
        overrides={"prices": [{"component": "pay", "rate": "0.025"}]},
    ),
    # 1500 -> ceil(1.5) = 2 packages x 4.00 = 8.00
    Case(
        "override package price",
        [SMS],
        {"sms": U(1500)},
        [("usage", "sms", "8.00")],
        "8.00",
        overrides={"prices": [{"component": "sms", "package_price": "4.00"}]},
    ),
    Case(
        "override fixed fee",
        [PLATFORM],
        {},
        [("fixed_fee", "platform", "250.00")],
        "250.00",
        overrides={"prices": [{"component": "platform", "amount": "250.00"}]},
    ),
    # ------------------------------------------------------------ discounts
    # 1,500,000 x 0.002 = 3000.00; 10% = 300.00 -> 2700.00
    Case(
        "component percent discount",
        [API],
        {"api": U(1500000)},
        [("usage", "api", "3000.00"), ("discount", "api", "-300.00")],
        "2700.00",
        overrides={"discounts": [{"component": "api", "percent_off": "10"}]},
    ),
    # 300.00 - 50.00 = 250.00
    Case(
        "component fixed discount",
        [PLATFORM],
        {},
        [("fixed_fee", "platform", "300.00"), ("discount", "platform", "-50.00")],
        "250.00",
        overrides={"discounts": [{"component": "platform", "amount_off": "50.00"}]},
    ),
    # a 50.00 discount on a 3.00 charge only takes it to zero
    Case(
        "fixed discount never negative",
        [API],
        {"api": U(1500)},
        [("usage", "api", "3.00"), ("discount", "api", "-3.00")],
        "0.00",
        overrides={"discounts": [{"component": "api", "amount_off": "50.00"}]},
    ),
    # fixed discounts are per period: 60.00 x 1/2 = 30.00 off 150.00 (300 x 1/2)
    Case(
        "fixed discount prorated",
        [PLATFORM],
        {},
        [("fixed_fee", "platform", "150.00"), ("discount", "platform", "-30.00")],
        "120.00",
        proration=Fraction(1, 2),
        overrides={"discounts": [{"component": "platform", "amount_off": "60.00"}]},
    ),
    # (3.00 + 300.00) = 303.00; 10% = 30.30 -> 272.70
    Case(
        "invoice percent discount",
        [API, PLATFORM],
        {"api": U(1500)},
        [
            ("usage", "api", "3.00"),
            ("fixed_fee", "platform", "300.00"),
            ("discount", None, "-30.30"),
        ],
        "272.70",
        overrides={"discounts": [{"percent_off": "10"}]},
    ),
    # stacked: 10% then 20.00 off on the running total: 303 - 30.30 = 272.70 - 20 = 252.70
    Case(
        "invoice discounts stack in order",
        [API, PLATFORM],
        {"api": U(1500)},
        [
            ("usage", "api", "3.00"),
            ("fixed_fee", "platform", "300.00"),
            ("discount", None, "-30.30"),
            ("discount", None, "-20.00"),
        ],
        "252.70",
        overrides={"discounts": [{"percent_off": "10"}, {"amount_off": "20.00"}]},
    ),
    # 500 x 0.002 = 1.00; 12.5% = 0.125 -> HALF_UP 0.13 -> 0.87
    Case(
        "discount tie half up",
        [API],
        {"api": U(500)},
        [("usage", "api", "1.00"), ("discount", None, "-0.13")],
        "0.87",
        overrides={"discounts": [{"percent_off": "12.5"}]},
    ),
    # ... HALF_EVEN 0.12 -> 0.88
    Case(
        "discount tie half even",
        [API],
        {"api": U(500)},
        [("usage", "api", "1.00"), ("discount", None, "-0.12")],
        "0.88",
        overrides={"discounts": [{"percent_off": "12.5"}]},
        rounding=ROUND_HALF_EVEN,
    ),
    # ------------------------------------------------------------ caps
    # 1,000,000 x 0.002 = 2000.00 capped at 1500.00
    Case(
        "cap reached",
        [API],
        {"api": U(1000000)},
        [("usage", "api", "1500.00")],
        "1500.00",
        overrides={"caps": [{"component": "api", "max_amount": "1500.00"}]},
    ),
    Case(
        "cap not reached",
        [API],
        {"api": U(1500)},
        [("usage", "api", "3.00")],
        "3.00",
        overrides={"caps": [{"component": "api", "max_amount": "1500.00"}]},
    ),
    # cap first, then the discount: 1500.00 - 10% = 1350.00
    Case(
        "cap then discount",
        [API],
        {"api": U(1000000)},
        [("usage", "api", "1500.00"), ("discount", "api", "-150.00")],
        "1350.00",
        overrides={
            "caps": [{"component": "api", "max_amount": "1500.00"}],
            "discounts": [{"component": "api", "percent_off": "10"}],
        },
    ),
    # ------------------------------------------------------------ prepaid credit
    # 3.00 + 300.00 = 303.00; 100.00 of credit -> 203.00 due, 0.00 left
    Case(
        "prepaid partial",
        [API, PLATFORM],
        {"api": U(1500)},
        [
            ("usage", "api", "3.00"),
            ("fixed_fee", "platform", "300.00"),
            ("credit_drawdown", None, "-100.00"),
        ],
        "203.00",
        prepaid="100.00",
        remaining="0.00",
    ),
    # 3.00 due, 100.00 credit -> 0.00 due, 97.00 left
    Case(
        "prepaid covers all",
        [API],
        {"api": U(1500)},
        [("usage", "api", "3.00"), ("credit_drawdown", None, "-3.00")],
        "0.00",
        prepaid="100.00",
        remaining="97.00",
    ),
    # nothing due: no credit line, balance untouched
    Case(
        "prepaid nothing due",
        [API],
        {},
        [("usage", "api", "0.00")],
        "0.00",
        prepaid="100.00",
        remaining="100.00",
    ),
    # ------------------------------------------------------------ currencies and ties
    # JPY: 1001 x 0.35 = 350.35 -> 350
    Case(
        "JPY",
        [w(API, unit_price="0.35")],
        {"api": U(1001)},
        [("usage", "api", "350")],
        "350",
        minor_units=0,
    ),
    # JPY tie: 5 x 0.5 = 2.5 -> 3 (HALF_UP)
    Case(
        "JPY tie half up",
        [w(API, unit_price="0.5")],
        {"api": U(5)},
        [("usage", "api", "3")],
        "3",
        minor_units=0,
    ),
    # ... -> 2 (HALF_EVEN)
    Case(
        "JPY tie half even",
        [w(API, unit_price="0.5")],
        {"api": U(5)},
        [("usage", "api", "2")],
        "2",
        minor_units=0,
        rounding=ROUND_HALF_EVEN,
    ),
    # KWD: 37 x 0.01234 = 0.45658 -> 0.457
    Case(
        "KWD",
        [w(API, unit_price="0.01234")],
        {"api": U(37)},
        [("usage", "api", "0.457")],
        "0.457",
        minor_units=3,
    ),
    # KWD tie: 1 x 0.0125 -> 0.013 HALF_UP
    Case(
        "KWD tie half up",
        [w(API, unit_price="0.0125")],
        {"api": U(1)},
        [("usage", "api", "0.013")],
        "0.013",
        minor_units=3,
    ),
    # ... -> 0.012 HALF_EVEN
    Case(
        "KWD tie half even",
        [w(API, unit_price="0.0125")],
        {"api": U(1)},
        [("usage", "api", "0.012")],
        "0.012",
        minor_units=3,
        rounding=ROUND_HALF_EVEN,
    ),
    # USD tie: 1 x 0.125 -> 0.13 HALF_UP
    Case(
        "USD tie half up",
        [w(API, unit_price="0.125")],
        {"api": U(1)},
        [("usage", "api", "0.13")],
        "0.13",
    ),
    # ... -> 0.12 HALF_EVEN
    Case(
        "USD tie half even",
        [w(API, unit_price="0.125")],
        {"api": U(1)},
        [("usage", "api", "0.12")],
        "0.12",
        rounding=ROUND_HALF_EVEN,
    ),
    # 0.135 HALF_EVEN -> 0.14 (4 is even)
    Case(
        "USD tie half even up",
        [w(API, unit_price="0.135")],
        {"api": U(1)},
        [("usage", "api", "0.14")],
        "0.14",
        rounding=ROUND_HALF_EVEN,
    ),
    # ------------------------------------------------------------ a whole contract
    # platform 300 x 20/30 = 200.00
    # api 1,500,000 - 1,000,000 included = 500,000 x 0.002 = 1000.00; 10% off api -> -100.00
    # minimum 500 x 2/3 = 333.33 < usage 900.00: no true-up
    # invoice 5% on 1000 - 100 + 200 = 1100.00 -> -55.00 -> 1045.00
    # prepaid 45.00 -> 1000.00 due, 0.00 left
    Case(
        "full contract",
        [w(API, free_units="1000000"), PLATFORM, MINIMUM],
        {"api": U(1500000)},
        [
            ("usage", "api", "1000.00"),
            ("fixed_fee", "platform", "200.00"),
            ("discount", "api", "-100.00"),
            ("discount", None, "-55.00"),
            ("credit_drawdown", None, "-45.00"),
        ],
        "1000.00",
        proration=Fraction(20, 30),
        overrides={"discounts": [{"component": "api", "percent_off": "10"}, {"percent_off": "5"}]},
        prepaid="45.00",
        remaining="0.00",
    ),
    # ------------------------------------------------------------ amendments (rate_segments)
    # June: days 1-15 on plan A (platform 100, api 0.002), 16-30 on plan B
    # (platform 200, api 0.001), 15/30 each.
    # A: 100 x 1/2 = 50.00; 1000 x 0.002 = 2.00.  B: 200 x 1/2 = 100.00; 4000 x 0.001 = 4.00
    # total 156.00
    Case(
        "amendment upgrade mid-month",
        [],
        {},
        [
            ("usage", "api", "2.00"),
            ("fixed_fee", "platform", "50.00"),
            ("usage", "api", "4.00"),
            ("fixed_fee", "platform", "100.00"),
        ],
        "156.00",
        segments=[
            {
                "components": [API, w(PLATFORM, amount="100.00")],
                "usages": {"api": U(1000)},
                "proration": Fraction(15, 30),
            },
            {
                "components": [w(API, unit_price="0.001"), w(PLATFORM, amount="200.00")],
                "usages": {"api": U(4000)},
                "proration": Fraction(15, 30),
            },
        ],
    ),
    # 1000 included per period, not per segment: seg 1 uses 600 (0.00),
    # seg 2 has 400 left of 900 -> 500 x 0.002 = 1.00
    Case(
        "amendment shares included units",
        [],
        {},
        [("usage", "api", "0.00"), ("usage", "api", "1.00")],
        "1.00",
        segments=[
            {
                "components": [w(API, free_units="1000")],
                "usages": {"api": U(600)},
                "proration": Fraction(1, 2),
            },
            {
                "components": [w(API, free_units="1000")],
                "usages": {"api": U(900)},
                "proration": Fraction(1, 2),
            },
        ],
    ),
    # cap 10.00 per period: seg 1 4000 x 0.002 = 8.00; seg 2 6.00 but only 2.00 of cap left
    Case(
        "amendment shares cap",
        [],
        {},
        [("usage", "api", "8.00"), ("usage", "api", "2.00")],
        "10.00",
        segments=[
            {
                "components": [API],
                "usages": {"api": U(4000)},
                "proration": Fraction(1, 2),
                "overrides": {"caps": [{"component": "api", "max_amount": "10.00"}]},
            },
            {
                "components": [API],
                "usages": {"api": U(3000)},
                "proration": Fraction(1, 2),
                "overrides": {"caps": [{"component": "api", "max_amount": "10.00"}]},
            },
        ],
    ),
    # minimum 300 prorated per segment: seg 1 (10/30) needs 100.00, has 40.00
    # (20000 x 0.002) -> true-up 60.00; seg 2 (20/30) needs 200.00, has 250.00 -> none
    # total 40 + 60 + 250 = 350.00
    Case(
        "amendment prorates minimum",
        [],
        {},
        [
            ("usage", "api", "40.00"),
            ("minimum_true_up", "min", "60.00"),
            ("usage", "api", "250.00"),
        ],
        "350.00",
        segments=[
            {
                "components": [API, w(MINIMUM, amount="300")],
                "usages": {"api": U(20000)},
                "proration": Fraction(10, 30),
            },
            {
                "components": [API, w(MINIMUM, amount="300")],
                "usages": {"api": U(125000)},
                "proration": Fraction(20, 30),
            },
        ],
    ),
    # tiers fill once per period: seg 1 80 GB = 80 x 0.10 = 8.00; seg 2 continues at 80:
    # 20 x 0.10 = 2.00, then 20 x 0.08 + 2 flat = 3.60 -> 5.60; total 13.60, same as 120 GB
    # in one go (10.00 + 20 x 0.08 + 2)
    Case(
        "amendment continues graduated tiers",
        [],
        {},
        [("usage", "storage", "8.00"), ("usage", "storage", "5.60")],
        "13.60",
        segments=[
            {"components": [STORAGE], "usages": {"gb": U(80)}, "proration": Fraction(1, 2)},
            {"components": [STORAGE], "usages": {"gb": U(40)}, "proration": Fraction(1, 2)},
        ],
    ),
    # a package opened in seg 1 (600 of 1000 -> 5.00) is not billed again for 300 more
    Case(
        "amendment continues open package",
        [],
        {},
        [("usage", "sms", "5.00"), ("usage", "sms", "0.00")],
        "5.00",
        segments=[
            {"components": [SMS], "usages": {"sms": U(600)}, "proration": Fraction(1, 2)},
            {"components": [SMS], "usages": {"sms": U(300)}, "proration": Fraction(1, 2)},
        ],
    ),
    # cancellation on the 21st: one segment 20/30; platform 300 -> 200.00; credit applies once
    Case(
        "amendment cancellation with credit",
        [],
        {},
        [("fixed_fee", "platform", "200.00"), ("credit_drawdown", None, "-150.00")],
        "50.00",
        prepaid="150.00",
        remaining="0.00",
        segments=[{"components": [PLATFORM], "usages": {}, "proration": Fraction(20, 30)}],
    ),
]


def _run(case: Case) -> RatingResult:
    if case.segments:
        segments = [
            Segment(
                components=components_from_config(s["components"]),
                usages=s["usages"],
                proration=s["proration"],
                overrides=overrides_from_dict(s["overrides"]) if "overrides" in s else None,
                service_period=s.get("period"),
            )
            for s in case.segments
        ]
        return rate_segments(
            segments=segments,
            minor_units=case.minor_units,
            rounding=case.rounding,
            prepaid_balance=D(case.prepaid),
        )
    return rate_period(
        components=components_from_config(case.components),
        usages=case.usages,
        minor_units=case.minor_units,
        rounding=case.rounding,
        proration=case.proration,
        overrides=overrides_from_dict(case.overrides) if case.overrides else None,
        prepaid_balance=D(case.prepaid),
    )


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_pricing_case(case: Case) -> None:
    result = _run(case)
    got = [(ln.kind, ln.component, str(ln.amount)) for ln in result.lines]
    assert got == case.lines
    assert result.subtotal == D(case.subtotal)
    assert str(result.subtotal) == case.subtotal  # rounded to the currency's minor unit
    assert result.subtotal == sum(ln.amount for ln in result.lines)
    if case.remaining is not None:
        assert result.prepaid_balance_remaining == D(case.remaining)
    for line in result.lines:
        assert line.amount.as_tuple().exponent == -case.minor_units
        if line.unit_price is not None:
            assert line.unit_price.as_tuple().exponent == -6
        assert line.quantity.as_tuple().exponent == -6


# ---------------------------------------------------------------- line details


def test_graduated_line_shows_its_tiers() -> None:
    # 1001 units: 100 @0.10 = 10; 900 @0.08 + 2 = 74; 1 @0.05 + 5 = 5.05 -> 89.05
    (line,) = rate_period(
        components=[component_from_dict(STORAGE)], usages={"gb": U(1001)}, minor_units=2
    ).lines
    assert line.unit_price is None
    assert [
        (t.from_units, t.to_units, t.units, t.unit_price, t.flat_fee, t.amount) for t in line.tiers
    ] == [
        (D(0), D(100), D(100), D("0.10"), D(0), D("10.00")),
        (D(100), D(1000), D(900), D("0.08"), D(2), D("74.00")),
        (D(1000), None, D(1), D("0.05"), D(5), D("5.05")),
    ]
    assert sum(t.amount for t in line.tiers) == line.amount


def test_usage_line_details() -> None:
    (line,) = rate_period(
        components=[component_from_dict(w(API, free_units="1000", description="API calls"))],
        usages={"api": U(1500)},
        minor_units=2,
    ).lines
    assert line.metric == "api"
    assert line.quantity == D(500) and line.usage_quantity == D(1500)
    assert line.included_units == D(1000)
    assert line.unit_price == D("0.002000")
    assert line.description.startswith("API calls")


def test_package_line_is_packages_times_price() -> None:
    (line,) = rate_period(
        components=[component_from_dict(SMS)], usages={"sms": U(2500)}, minor_units=2
    ).lines
    assert (line.quantity, line.unit_price, line.amount) == (D(3), D("5.00"), D("15.00"))
    assert line.usage_quantity == D(2500)


def test_capped_line_keeps_the_uncapped_amount() -> None:
    result = rate_period(
        components=[component_from_dict(API)],
        usages={"api": U(1000000)},
        minor_units=2,
        overrides=Overrides(caps=(Cap(component="api", max_amount=D("1500.00")),)),
    )
    assert result.lines[0].uncapped_amount == D("2000.00")
    assert result.lines[0].amount == D("1500.00")


def test_prorated_lines_show_their_fraction() -> None:
    result = rate_period(
        components=[component_from_dict(PLATFORM)],
        usages={},
        minor_units=2,
        proration=proration_ratio(
            period=parse_period("2026-06"), active_from=date(2026, 6, 11), active_to=None
        ),
    )
    assert result.lines[0].proration == D("0.666667")
    assert "2/3" in result.lines[0].description  # Fraction(20, 30) normalises


def test_exact_fraction_proration_avoids_double_rounding() -> None:
    # 0.09 x 5/6 = 0.075 exactly -> 0.08 HALF_UP.  A Fraction multiplies before it
    # divides, so the tie is seen; a 28-digit Decimal 5/6 (0.8333...33) would give
    # 0.074999... -> 0.07.  This is why rating prefers periods.proration_ratio.
    plan = [component_from_dict(w(PLATFORM, amount="0.09"))]
    exact = rate_period(components=plan, usages={}, minor_units=2, proration=Fraction(5, 6))
    assert exact.subtotal == D("0.08")
    approx = rate_period(components=plan, usages={}, minor_units=2, proration=D(5) / D(6))
    assert approx.subtotal == D("0.07")


def test_segments_from_split_period_cover_the_period_once() -> None:
    june = parse_period("2026-06")
    first, second = split_period(period=june, at=[date(2026, 6, 16)])
    plan = components_from_config([w(PLATFORM, amount="300.00")])
    result = rate_segments(
        segments=[
            Segment(
                components=plan,
                usages={},
                proration=proration_ratio(period=june, active_from=p.start, active_to=p.end),
                service_period=p,
            )
            for p in (first, second)
        ],
        minor_units=2,
    )
    # 300 x 15/30 + 300 x 15/30 = 300.00
    assert result.subtotal == D("300.00")
    assert [ln.service_period for ln in result.lines] == [first, second]
    assert [ln.segment for ln in result.lines] == [0, 1]


def test_result_helpers() -> None:
    case = next(c for c in CASES if c.id == "prepaid partial")
    result = _run(case)
    assert result.total_before_credit == D("303.00")
    assert result.credit_applied == D("100.00")
    assert result.minor_units == 2 and result.rounding == ROUND_HALF_UP


# ---------------------------------------------------------------- config round trip


@pytest.mark.parametrize(
    "config",
    [
        API,
        w(API, free_units="10", description="API"),
        STORAGE,
        SEATS,
        SMS,
        PAY,
        PLATFORM,
        MINIMUM,
        w(MINIMUM, metrics=["api", "gb"]),
        {"type": "percentage", "code": "p", "metric": "m", "rate": "0"},
    ],
)
def test_component_round_trips_through_dict(config: dict[str, Any]) -> None:
    component = component_from_dict(config)
    assert component_from_dict(component.to_dict()) == component
    assert component.to_dict()["type"] == config["type"]


def test_overrides_round_trip() -> None:
    raw = {
        "prices": [
            {"component": "storage", "tiers": STORAGE["tiers"]},
            {"component": "api", "unit_price": "1"},
        ],
        "discounts": [
            {"component": "api", "percent_off": "10"},
            {"amount_off": "5", "description": "Goodwill"},
        ],
        "caps": [{"component": "api", "max_amount": "100"}],
    }
    overrides = overrides_from_dict(raw)
    assert overrides_from_dict(overrides.to_dict()) == overrides


def test_dataclasses_can_be_built_directly() -> None:
    plan: list[Component] = [
        PerUnitPrice(code="api", metric="api", unit_price=D("0.002")),
        GraduatedPrice(
            code="gb",
            metric="gb",
            tiers=(
                Tier(up_to=D(100), unit_price=D("0.10")),
                Tier(up_to=None, unit_price=D("0.05")),
            ),
        ),
        FixedFee(code="platform", amount=D("10.00")),
    ]
    result = rate_period(
        components=plan,
        usages={"api": U(1000), "gb": U(200)},
        minor_units=2,
        overrides=Overrides(
            prices=(PriceOverride(component="api", unit_price=D("0.001")),),
            discounts=(Discount(percent_off=D(50)),),
        ),
    )
    # api 1000 x 0.001 = 1.00; gb 100 x 0.10 + 100 x 0.05 = 15.00; platform 10.00
    # 26.00 - 50% = 13.00
    assert result.subtotal == D("13.00")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("config", "code", "path"),
    [
        (w(API, unit_price=0.002), "float_not_allowed", "unit_price"),
        (w(API, unit_price="abc"), "invalid_decimal", "unit_price"),
        (w(API, unit_price="0.0000001"), "too_many_places", "unit_price"),
        (w(API, unit_price="-1"), "negative_value", "unit_price"),
        (w(API, unit_price="NaN"), "invalid_decimal", "unit_price"),
        (w(API, unit_price=True), "invalid_type", "unit_price"),
        (w(API, type="per_seat"), "unknown_component_type", "type"),
        ({"code": "api"}, "missing_field", "type"),
        (w(API, colour="blue"), "unknown_field", ""),
        ({"type": "per_unit", "code": "api", "metric": "api"}, "missing_field", "unit_price"),
        (w(API, code=""), "invalid_value", "code"),
        (w(SMS, package_size="0"), "invalid_value", "package_size"),
        (
            w(
                STORAGE,
                tiers=[
                    {"up_to": "100", "unit_price": "1"},
                    {"up_to": "50", "unit_price": "1"},
                    {"up_to": None, "unit_price": "1"},
                ],
            ),
            "invalid_tiers",
            "tiers[1].up_to",
        ),
        (
            w(STORAGE, tiers=[{"up_to": "100", "unit_price": "1"}]),
            "invalid_tiers",
            "tiers[0].up_to",
        ),
        (
            w(
                STORAGE,
                tiers=[{"up_to": None, "unit_price": "1"}, {"up_to": None, "unit_price": "1"}],
            ),
            "invalid_tiers",
            "tiers[0].up_to",
        ),
        (w(STORAGE, tiers=[]), "invalid_tiers", "tiers"),
        (
            w(STORAGE, tiers=[{"up_to": None, "unit_price": 0.1}]),
            "float_not_allowed",
            "tiers[0].unit_price",
        ),
        (w(STORAGE, tiers=[{"up_to": None}]), "missing_field", "tiers[0].unit_price"),
        (w(PAY, min_fee="30", max_fee="25"), "invalid_value", "min_fee"),
        (w(PAY, rate="2.9"), "invalid_value", "rate"),
        (w(PAY, free_units="1.5"), "invalid_value", "free_units"),
        (w(PLATFORM, prorate="yes"), "invalid_type", "prorate"),
        (w(MINIMUM, metrics=[]), "invalid_value", "metrics"),
        (w(MINIMUM, metrics="api"), "invalid_type", "metrics"),
    ],
)
def test_component_config_errors(config: dict[str, Any], code: str, path: str) -> None:
    with pytest.raises(RatingConfigError) as info:
        component_from_dict(config)
    assert info.value.code == code
    assert info.value.path == path
    assert code in str(info.value) and info.value.message


def test_config_error_paths_name_the_component() -> None:
    with pytest.raises(RatingConfigError) as info:
        components_from_config([API, w(SMS, package_price="x")])
    assert info.value.path == "[1].package_price"
    with pytest.raises(RatingConfigError) as info:
        components_from_config([API, API])
    assert info.value.code == "duplicate_component"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"prices": [{"component": "nope", "unit_price": "1"}]}, "unknown_component"),
        ({"prices": [{"component": "api", "rate": "0.1"}]}, "override_mismatch"),
        ({"prices": [{"component": "platform", "unit_price": "1"}]}, "override_mismatch"),
        ({"caps": [{"component": "platform", "max_amount": "1"}]}, "override_mismatch"),
        ({"discounts": [{"component": "ghost", "percent_off": "5"}]}, "unknown_component"),
        ({"discounts": [{"component": "min", "percent_off": "5"}]}, "override_mismatch"),
    ],
)
def test_override_errors_at_rating_time(overrides: dict[str, Any], code: str) -> None:
    with pytest.raises(RatingConfigError) as info:
        rate_period(
            components=components_from_config([API, PLATFORM, MINIMUM]),
            usages={},
            minor_units=2,
            overrides=overrides_from_dict(overrides),
        )
    assert info.value.code == code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"prices": [{"component": "api"}]}, "invalid_value"),  # no price given
        ({"prices": [{"component": "api", "unit_price": "1", "rate": "0.1"}]}, "invalid_value"),
        ({"discounts": [{"percent_off": "10", "amount_off": "1"}]}, "invalid_value"),
        ({"discounts": [{"percent_off": "101"}]}, "invalid_value"),
        (
            {
                "caps": [
                    {"component": "api", "max_amount": "1"},
                    {"component": "api", "max_amount": "2"},
                ]
            },
            "duplicate_component",
        ),
        ({"surprise": []}, "unknown_field"),
    ],
)
def test_override_parse_errors(raw: dict[str, Any], code: str) -> None:
    with pytest.raises(RatingConfigError) as info:
        overrides_from_dict(raw)
    assert info.value.code == code


def test_usage_errors() -> None:
    with pytest.raises(RatingInputError) as info:
        Usage(quantity=-1)  # type: ignore[arg-type]  # an int on purpose: refused
    assert info.value.code == "invalid_type"
    with pytest.raises(RatingInputError) as info:
        Usage(quantity=D(-1))
    assert info.value.code == "negative_value"
    with pytest.raises(RatingInputError) as info:
        Usage(quantity=1.5)  # type: ignore[arg-type]  # a float on purpose: refused
    assert info.value.code == "float_not_allowed"
    with pytest.raises(RatingInputError) as info:
        rate_period(
            components=components_from_config([PAY]), usages={"payments": U(3)}, minor_units=2
        )
    assert info.value.code == "missing_event_amounts"


def test_argument_errors() -> None:
    plan = components_from_config([PLATFORM])
    with pytest.raises(RatingInputError) as info:
        rate_period(components=plan, usages={}, minor_units=2, proration=D("1.5"))
    assert info.value.code == "invalid_argument"
    with pytest.raises(RatingInputError) as info:
        rate_period(components=plan, usages={}, minor_units=2, prepaid_balance=D("1.005"))
    assert info.value.code == "too_many_places"
    with pytest.raises(ValueError, match="not allowed"):
        rate_period(components=plan, usages={}, minor_units=2, rounding="ROUND_DOWN")


def test_segments_must_not_overlap() -> None:
    june = parse_period("2026-06")
    plan = components_from_config([API])
    overlapping = [
        Segment(
            components=plan,
            usages={},
            proration=Fraction(1, 2),
            service_period=Period(start=date(2026, 6, 1), end=date(2026, 6, 20)),
        ),
        Segment(
            components=plan,
            usages={},
            proration=Fraction(1, 2),
            service_period=Period(start=date(2026, 6, 15), end=june.end),
        ),
    ]
    with pytest.raises(RatingInputError) as info:
        rate_segments(segments=overlapping, minor_units=2)
    assert info.value.code == "overlapping_segments"
    too_much = [Segment(components=plan, usages={}, proration=Fraction(2, 3))] * 2
    with pytest.raises(RatingInputError) as info:
        rate_segments(segments=too_much, minor_units=2)
    assert info.value.code == "overlapping_segments"


def test_plans_stored_before_the_structs_load_unchanged() -> None:
    # Exactly what the hand-written to_dict wrote into PricePlanVersion.components.
    stored: list[dict[str, Any]] = [
        {
            "type": "graduated",
            "code": "storage",
            "metric": "gb",
            "free_units": "0",
            "description": "",
            "tiers": [
                {"up_to": "100", "unit_price": "0.10", "flat_fee": "0"},
                {"up_to": None, "unit_price": "0.05", "flat_fee": "5"},
            ],
        },
        {
            "type": "percentage",
            "code": "pay",
            "metric": "payments",
            "free_units": "0",
            "description": "",
            "rate": "0.029",
            "fixed_fee": "0.30",
        },
        {
            "type": "fixed_fee",
            "code": "platform",
            "amount": "300.00",
            "prorate": True,
            "description": "",
        },
        {
            "type": "minimum_commitment",
            "code": "min",
            "amount": "500.00",
            "metrics": None,
            "description": "",
        },
    ]
    components = components_from_config(stored)
    assert [type(c).__name__ for c in components] == [
        "GraduatedPrice",
        "PercentagePrice",
        "FixedFee",
        "MinimumCommitment",
    ]
    assert components_from_config([c.to_dict() for c in components]) == components
    # 150 GB: 100 x 0.10 + 50 x 0.05 + 5 = 17.50; fee 300.00; no payments; minimum 500 - 17.50 = 482.50
    result = rate_period(components=components, usages={"gb": U(150)}, minor_units=2)
    assert result.subtotal == D("800.00")
