"""Money and rate precision for Ledgerline: the one place amounts are rounded.

Rounding rule
-------------
* Amounts are ``decimal.Decimal``, never ``float`` (a float raises ``TypeError``).
* Unit prices, rates, tier bounds and quantities carry at most
  ``RATE_PLACES`` (6) decimal places.  ``quantize_rate`` brings a value to that
  precision (``ROUND_HALF_UP`` unless told otherwise).
* Charges are computed exactly and rounded **once, at line level**, to the
  currency's minor unit (JPY 0, USD/EUR 2, KWD/BHD 3) by ``round_money`` with a
  named mode: ``ROUND_HALF_UP`` (default: 0.125 -> 0.13) or ``ROUND_HALF_EVEN``
  (banker's: 0.125 -> 0.12).  Invoice totals are sums of rounded lines and are
  never rounded again.
* Rounding is symmetric around zero (``-0.125`` -> ``-0.13`` under HALF_UP), so
  a discount line rounds exactly like the charge it mirrors, and a zero result
  is always ``+0`` (never ``Decimal("-0.00")``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

__all__ = [
    "MAX_MINOR_UNITS",
    "RATE_PLACES",
    "ROUNDING_MODES",
    "ROUND_HALF_EVEN",
    "ROUND_HALF_UP",
    "check_rounding",
    "minor_unit",
    "quantize_rate",
    "round_money",
]

#: Decimal places kept for unit prices, rates, tier bounds and quantities.
RATE_PLACES = 6
#: Rounding modes a price plan or currency may name.  Others (ROUND_DOWN,
#: ROUND_CEILING, ...) are refused so a typo cannot silently change totals.
ROUNDING_MODES: frozenset[str] = frozenset({ROUND_HALF_UP, ROUND_HALF_EVEN})
#: ISO 4217 minor units go from 0 (JPY) to 4 (CLF); nothing real goes beyond.
MAX_MINOR_UNITS = 4

_RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)


def check_rounding(rounding: str) -> str:
    """Return ``rounding`` if it is an allowed named mode, else raise ``ValueError``."""
    if rounding not in ROUNDING_MODES:
        allowed = ", ".join(sorted(ROUNDING_MODES))
        raise ValueError(f"rounding mode {rounding!r} is not allowed; use one of {allowed}")
    return rounding


def _check_decimal(value: object, *, name: str) -> Decimal:
    # bool is an int subclass and float is the thing we exist to keep out.
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def minor_unit(minor_units: int) -> Decimal:
    """The smallest amount of a currency with ``minor_units`` decimals: 2 -> Decimal('0.01')."""
    if isinstance(minor_units, bool) or not isinstance(minor_units, int):
        raise TypeError("minor_units must be an int")
    if not 0 <= minor_units <= MAX_MINOR_UNITS:
        raise ValueError(f"minor_units must be between 0 and {MAX_MINOR_UNITS}, got {minor_units}")
    return Decimal(1).scaleb(-minor_units)


def round_money(amount: Decimal, *, minor_units: int, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round ``amount`` to the currency's minor unit with a named mode.

    >>> round_money(Decimal("0.125"), minor_units=2)
    Decimal('0.13')
    >>> round_money(Decimal("0.125"), minor_units=2, rounding=ROUND_HALF_EVEN)
    Decimal('0.12')
    >>> round_money(Decimal("1234.5"), minor_units=0)
    Decimal('1235')
    """
    _check_decimal(amount, name="amount")
    quantum = minor_unit(minor_units)
    result = amount.quantize(quantum, rounding=check_rounding(rounding))
    return result.copy_abs() if result.is_zero() else result


def quantize_rate(value: Decimal, *, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Bring a unit price, rate or quantity to ``RATE_PLACES`` (6) decimals.

    >>> quantize_rate(Decimal("0.0025"))
    Decimal('0.002500')
    >>> quantize_rate(Decimal("1") / Decimal("3"))
    Decimal('0.333333')
    """
    _check_decimal(value, name="value")
    result = value.quantize(_RATE_QUANTUM, rounding=check_rounding(rounding))
    return result.copy_abs() if result.is_zero() else result
