"""Billing periods: local calendar dates, their UTC bounds, and day-based proration.

Rules
-----
* A ``Period`` is a half-open range of *local calendar dates* ``[start, end)``:
  ``end`` is the first day **not** in the period.  A customer's period is
  defined in the customer's (or legal entity's) time zone; convert to UTC only
  at the edges with ``period_bounds_utc`` / ``local_date_of`` (zoneinfo, so
  DST days of 23 or 25 hours come out right).
* Cadences: monthly, quarterly, annual, anchored on ``anchor_day`` (1-28, so
  every month has it) and, for quarterly/annual, ``anchor_month``.
* Proration is by whole days: ``active days / period days``, ``active_to``
  exclusive.  ``proration_fraction`` returns a ``Decimal`` (28 significant
  digits); ``proration_ratio`` returns the same value as an exact
  ``fractions.Fraction``, which rating accepts and prefers because it
  multiplies before it divides, so no rounding happens before the one
  line-level rounding in ``billing.money.round_money``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import Literal, get_args
from zoneinfo import ZoneInfo

__all__ = [
    "Cadence",
    "Period",
    "cadence_of",
    "local_date_of",
    "parse_period",
    "period_bounds_utc",
    "period_containing",
    "proration_fraction",
    "proration_ratio",
    "split_period",
]

Cadence = Literal["monthly", "quarterly", "annual"]
_CADENCE_MONTHS: dict[str, int] = {"monthly": 1, "quarterly": 3, "annual": 12}
assert set(_CADENCE_MONTHS) == set(get_args(Cadence))


_CADENCES: tuple[Cadence, ...] = get_args(Cadence)


def cadence_of(value: str) -> Cadence:
    """`value` (a contract's stored cadence) as a Cadence; ValueError if it is none."""
    for cadence in _CADENCES:
        if value == cadence:
            return cadence
    raise ValueError(f"Unknown cadence {value!r}: one of {', '.join(_CADENCES)}.")


_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Period:
    """Local calendar dates ``[start, end)``; ``end`` is exclusive."""

    start: date
    end: date

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            # datetime is a date subclass; a period is made of dates only.
            if isinstance(value, datetime) or not isinstance(value, date):
                raise TypeError(f"Period.{name} must be a date, got {type(value).__name__}")
        if self.start >= self.end:
            raise ValueError(f"Period start {self.start} must be before end {self.end}")

    @property
    def days(self) -> int:
        """Number of calendar days in the period."""
        return (self.end - self.start).days

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end

    def overlaps(self, other: Period) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def _month_index_to_date(index: int, day: int) -> date:
    year, month0 = divmod(index, 12)
    return date(year, month0 + 1, day)


def period_containing(
    *,
    local_date: date,
    cadence: Cadence,
    anchor_day: int,
    anchor_month: int = 1,
) -> Period:
    """The period of ``cadence`` that contains ``local_date``.

    Periods start on ``anchor_day`` of a month; quarterly periods start in
    ``anchor_month`` and every third month after it, annual ones in
    ``anchor_month``.  ``anchor_month`` is ignored for monthly periods.

    >>> period_containing(local_date=date(2026, 3, 14), cadence="monthly", anchor_day=15)
    Period(start=datetime.date(2026, 2, 15), end=datetime.date(2026, 3, 15))
    """
    if cadence not in _CADENCE_MONTHS:
        raise ValueError(f"cadence must be one of {sorted(_CADENCE_MONTHS)}, got {cadence!r}")
    if isinstance(anchor_day, bool) or not isinstance(anchor_day, int) or not 1 <= anchor_day <= 28:
        raise ValueError(f"anchor_day must be an int from 1 to 28, got {anchor_day!r}")
    if (
        isinstance(anchor_month, bool)
        or not isinstance(anchor_month, int)
        or not 1 <= anchor_month <= 12
    ):
        raise ValueError(f"anchor_month must be an int from 1 to 12, got {anchor_month!r}")
    if isinstance(local_date, datetime) or not isinstance(local_date, date):
        raise TypeError("local_date must be a date (convert timestamps with local_date_of first)")
    step = _CADENCE_MONTHS[cadence]
    index = local_date.year * 12 + local_date.month - 1
    if local_date.day < anchor_day:
        index -= 1  # this month's anchor is still ahead: the period began last month
    index -= (index - (anchor_month - 1)) % step  # back to a month the cadence starts in
    return Period(
        start=_month_index_to_date(index, anchor_day),
        end=_month_index_to_date(index + step, anchor_day),
    )


def parse_period(text: str) -> Period:
    """Parse ``"YYYY-MM"`` into that calendar month: ``"2026-11"`` -> [2026-11-01, 2026-12-01)."""
    match = _PERIOD_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"period must look like 'YYYY-MM', got {text!r}")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or year < 1:
        raise ValueError(f"period {text!r} is not a real month")
    return period_containing(local_date=date(year, month, 1), cadence="monthly", anchor_day=1)


def period_bounds_utc(*, period: Period, tz: str) -> tuple[datetime, datetime]:
    """Aware UTC datetimes of local midnight at ``period.start`` and ``period.end``.

    Use them as ``start <= ts < end`` when selecting events.  Across a DST
    change the span is not a whole number of days: Europe/Berlin's March 2026
    is 743 hours.  Where local midnight falls in a DST gap (e.g. some
    America/Santiago transitions) the bound is the first instant of that
    local day; where it is ambiguous, its first occurrence.
    """
    zone = ZoneInfo(tz)

    def start_of(day: date) -> datetime:
        # fold=0: for a non-existent midnight zoneinfo uses the pre-transition
        # offset, which lands exactly on the transition instant (the day's
        # first real instant); for a repeated midnight it is the first one.
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    return start_of(period.start), start_of(period.end)


def local_date_of(*, ts: datetime, tz: str) -> date:
    """The local calendar date of an aware timestamp in ``tz``.

    2026-10-31 23:30 UTC is 2026-11-01 in Asia/Tokyo (UTC+9).
    """
    if not isinstance(ts, datetime):
        raise TypeError("ts must be a datetime")
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("ts must be timezone-aware; naive datetimes are ambiguous")
    return ts.astimezone(ZoneInfo(tz)).date()


def _active_days(period: Period, active_from: date | None, active_to: date | None) -> int:
    start = period.start if active_from is None else max(period.start, active_from)
    end = period.end if active_to is None else min(period.end, active_to)
    return max(0, (end - start).days)


def proration_ratio(
    *, period: Period, active_from: date | None, active_to: date | None
) -> Fraction:
    """Exact share of ``period`` covered by ``[active_from, active_to)``, by days.

    ``None`` means open-ended on that side.  Starting on the 11th of a 30-day
    month gives ``Fraction(20, 30)``.
    """
    return Fraction(_active_days(period, active_from, active_to), period.days)


def proration_fraction(
    *, period: Period, active_from: date | None, active_to: date | None
) -> Decimal:
    """Share of ``period`` covered by ``[active_from, active_to)``, by days, as a Decimal.

    Exactly ``Decimal(active_days) / Decimal(period_days)`` at the default 28
    significant digits (20/30 -> 0.6666666666666666666666666667).  Prefer
    ``proration_ratio`` when feeding rating: it is exact.
    """
    return Decimal(_active_days(period, active_from, active_to)) / Decimal(period.days)


def split_period(*, period: Period, at: Sequence[date]) -> tuple[Period, ...]:
    """Split ``period`` at the given dates (e.g. amendment effective dates).

    Dates outside ``(start, end)`` or repeated are ignored; the pieces are
    contiguous, ordered and cover the period exactly once.
    """
    cuts = sorted({d for d in at if period.start < d < period.end})
    bounds = [period.start, *cuts, period.end]
    return tuple(Period(start=a, end=b) for a, b in itertools.pairwise(bounds))
