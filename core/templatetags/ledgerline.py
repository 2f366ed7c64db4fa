"""Template filters shared by the apps' pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core import formatting

register = template.Library()


@register.filter
def last_day(end_exclusive: date | None) -> date | None:
    """The last day of a period stored with an exclusive end (2026-11-01 → 2026-10-31).

    Periods are half-open in the code; people read "1 Oct – 31 Oct".
    """
    if end_exclusive is None:
        return None
    return end_exclusive - timedelta(days=1)


def _currency(currency: object) -> formatting.CurrencyLike:
    if not hasattr(currency, "code") or not hasattr(currency, "minor_units"):
        raise TypeError(f"money filters take a Currency, got {type(currency).__name__}")
    return currency  # hasattr narrowed it to an object with both attributes


def _in_currency(fn: Callable[..., str], amount: Decimal | None, currency: object) -> str:
    if amount is None or amount == "":
        return ""
    cur = _currency(currency)
    return fn(amount, currency=cur.code, minor_units=cur.minor_units)


@register.filter
def money(amount: Decimal | None, currency: object) -> str:
    """``{{ invoice.total|money:invoice.currency }}`` -> ``$1,234.50`` / ``(€12.00)`` / ``¥1,500``."""
    return _in_currency(formatting.format_money, amount, currency)


@register.filter
def unit_price(amount: Decimal | None, currency: object) -> str:
    """A unit price: the currency's minor units at least, up to 6 places (``$0.0025``)."""
    return _in_currency(formatting.format_unit_price, amount, currency)


@register.filter
def percent(rate: Decimal | None) -> str:
    """A tax rate stored as a fraction: ``0.190000`` -> ``19 %``."""
    return "" if rate is None or rate == "" else formatting.format_percent(rate)


@register.filter
def tax_label(name: str, rate: Decimal | None) -> str:
    """A tax line's name and rate, the rate once ("JCT 10 %", not "JCT 10 % 10 %")."""
    return name if rate is None or rate == "" else formatting.format_tax_label(name, rate)


@register.filter
def quantity(value: Decimal | None) -> str:
    """A quantity without trailing zeros: ``1500.000000`` -> ``1,500``."""
    return "" if value is None or value == "" else formatting.format_quantity(value)


@register.filter
def money_plain(amount: Decimal | None, currency: object) -> str:
    """The machine form for a form field's value: ``1234.50`` / ``1500`` / ``12.345``."""
    if amount is None or amount == "":
        return ""
    return formatting.money_plain(amount, minor_units=_currency(currency).minor_units)


@register.simple_tag
def one_time_token() -> SafeString:
    """A state-changing form's one-time token field (core.form_input.form_token): a fresh value
    each time it is rendered, so a double submit of this form is applied once."""
    import uuid

    return format_html('<input type="hidden" name="idempotency_key" value="{}">', uuid.uuid4().hex)
