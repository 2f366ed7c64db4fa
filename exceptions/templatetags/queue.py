"""Money with its currency's symbol and minor units; ages people read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency
from django import template
from django.utils import timezone

register = template.Library()


def money_text(amount: Decimal | None, currency: Any) -> str:
    """'$1,234.50', '¥1,235', 'KWD 1.235': the symbol, and exactly the currency's minor units."""
    if amount is None or currency is None:
        return ""
    units = currency.minor_units
    pattern = "¤#,##0" + ("." + "0" * units if units else "")
    value = amount.quantize(Decimal(1).scaleb(-units))
    return format_currency(
        value, currency.code, format=pattern, locale="en_US", currency_digits=False
    )


@register.filter
def money(amount: Decimal | None, currency: Any) -> str:
    return money_text(amount, currency)


@register.filter
def age(since: datetime | None) -> str:
    """'3 d 4 h', '5 h', '12 min'."""
    if since is None:
        return ""
    seconds = max(0, int((timezone.now() - since).total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h"
    return f"{rem // 60} min"


@register.filter
def past_due(due_at: datetime | None) -> bool:
    return due_at is not None and due_at < timezone.now()


@register.filter
def get(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key) if mapping else None
