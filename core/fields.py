"""Column options the apps' models share, typed so `DecimalField(**MONEY)` type-checks."""

from __future__ import annotations

from typing import TypedDict


class DecimalOptions(TypedDict):
    max_digits: int
    decimal_places: int


#: Money columns: up to 4 minor units (ISO 4217 maximum), amounts up to 10^14.
MONEY: DecimalOptions = {"max_digits": 18, "decimal_places": 4}
#: Rates, unit prices and quantities: 6 places (billing.money.RATE_PLACES).
RATE: DecimalOptions = {"max_digits": 24, "decimal_places": 6}
