"""How amounts, rates and quantities are written for people: the one place pages, the printable
invoice and CSV exports format numbers.

* Money: the currency's symbol (``$``, ``€``, ``¥``) or, where the locale has none, its code
  followed by a space (``KWD 1,234.500``); exactly the currency's minor units (USD 2, JPY 0,
  KWD 3); thousands separators; negatives in parentheses as finance writes them
  (``($1,234.50)``). Symbols and separators come from CLDR through Babel, for ``NUMBER_LOCALE``.
* Machine money (CSV cells, API strings): a plain decimal string with the currency's minor
  units and no separators (``-1234.50``, ``1235``, ``12.345``) so a spreadsheet reads it as a
  number; the currency goes in its own column/field.
* Rates: percentages with as many decimals as they need (``0.190000`` -> ``19 %``,
  ``0.0725`` -> ``7.25 %``).
* Quantities and unit prices: no trailing zeros (``1500.000000`` -> ``1,500``).

Display never changes a stored amount: an amount already carries at most the currency's minor
units (``billing.money.round_money`` rounds once, at line level); a value with more places is
rounded here half-up for display only.
"""

from __future__ import annotations

import re

from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from babel.numbers import format_decimal, get_currency_symbol

__all__ = [
    "NUMBER_LOCALE",
    "CurrencyLike",
    "format_money",
    "format_percent",
    "format_quantity",
    "format_unit_price",
    "money_plain",
]

#: The locale whose symbols and separators the pages use (one place to change it).
NUMBER_LOCALE = "en_US"
#: Decimal places kept for rates, unit prices and quantities (billing.money.RATE_PLACES).
_RATE_PLACES = 6


class CurrencyLike(Protocol):
    """What the formatter needs of a currency: ``core.models.Currency`` satisfies it."""

    code: str
    minor_units: int


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"expected a Decimal, got {type(value).__name__}")


def _quantize(amount: Decimal, minor_units: int) -> Decimal:
    result = amount.quantize(Decimal(1).scaleb(-minor_units), rounding=ROUND_HALF_UP)
    return result.copy_abs() if result.is_zero() else result


def _pattern(min_places: int, max_places: int) -> str:
    frac = "0" * min_places + "#" * (max_places - min_places)
    return "#,##0" + (f".{frac}" if frac else "")


def _symbol(code: str) -> str:
    symbol = get_currency_symbol(code, locale=NUMBER_LOCALE)
    # Babel does not apply CLDR's currency spacing: a code-like symbol gets its space here.
    return f"{symbol}\u00a0" if symbol[-1:].isalpha() else symbol


def format_money(amount: object, *, currency: str, minor_units: int) -> str:
    """``Decimal('-1234.5'), USD, 2`` -> ``($1,234.50)``; ``1234, JPY, 0`` -> ``¥1,234``."""
    value = _quantize(_decimal(amount), minor_units)
    digits = format_decimal(
        value.copy_abs(),
        format=_pattern(minor_units, minor_units),
        locale=NUMBER_LOCALE,
        decimal_quantization=False,
    )
    text = f"{_symbol(currency)}{digits}"
    return f"({text})" if value < 0 else text


def format_unit_price(amount: object, *, currency: str, minor_units: int) -> str:
    """A unit price: at least the currency's minor units, up to 6 places (``$0.0025``)."""
    value = _decimal(amount)
    value = value.quantize(Decimal(1).scaleb(-_RATE_PLACES), rounding=ROUND_HALF_UP)
    digits = format_decimal(
        value.copy_abs(),
        format=_pattern(minor_units, max(minor_units, _RATE_PLACES)),
        locale=NUMBER_LOCALE,
        decimal_quantization=True,
    )
    text = f"{_symbol(currency)}{digits}"
    return f"({text})" if value < 0 else text


def money_plain(amount: object, *, minor_units: int) -> str:
    """The machine form of an amount: ``-1234.50`` (USD), ``1235`` (JPY), ``12.345`` (KWD)."""
    return format(_quantize(_decimal(amount), minor_units), "f")


def format_percent(rate: object) -> str:
    """A tax rate stored as a fraction, as people read it: ``0.190000`` -> ``19 %``."""
    percent = _decimal(rate) * 100
    text = format_decimal(
        percent, format=_pattern(0, _RATE_PLACES), locale=NUMBER_LOCALE, decimal_quantization=True
    )
    return f"{text}\u00a0%"


def format_tax_label(name: str, rate: object) -> str:
    """A tax line's label: its name and rate ("VAT 19 %"), the rate left out when the name
    already says it ("JCT 10 %" stays as it is)."""
    percent = format_percent(rate)
    stated = r"(?<![\d.,])" + r"\s*".join(map(re.escape, percent.split())) + r"(?!\d)"
    if re.search(stated, name):
        return name
    return f"{name} {percent}" if name else percent


def format_quantity(quantity: object) -> str:
    """A quantity without trailing zeros, with separators: ``1500.000000`` -> ``1,500``."""
    value = _decimal(quantity)
    text = format_decimal(
        value, format=_pattern(0, _RATE_PLACES), locale=NUMBER_LOCALE, decimal_quantization=True
    )
    return "0" if text in ("-0", "") else text
