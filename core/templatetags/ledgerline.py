"""Template filters shared by the apps' pages."""

from __future__ import annotations

from datetime import date, timedelta

from django import template

register = template.Library()


@register.filter
def last_day(end_exclusive: date | None) -> date | None:
    """The last day of a period stored with an exclusive end (2026-11-01 → 2026-10-31).

    Periods are half-open in the code; people read "1 Oct – 31 Oct".
    """
    if end_exclusive is None:
        return None
    return end_exclusive - timedelta(days=1)
