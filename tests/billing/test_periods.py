"""billing.periods: local-date periods, UTC bounds across DST, proration (pure, no Django)."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from billing.periods import (
    Cadence,
    Period,
    local_date_of,
    parse_period,
    period_bounds_utc,
    period_containing,
    proration_fraction,
    proration_ratio,
    split_period,
)

HOUR = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --------------------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("period", "tz", "start", "end", "hours"),
    [
        # Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 31*24 - 1
        ("2026-03", "Europe/Berlin", utc(2026, 2, 28, 23), utc(2026, 3, 31, 22), 743),
        # Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 31*24 + 1
        ("2026-10", "Europe/Berlin", utc(2026, 9, 30, 22), utc(2026, 10, 31, 23), 745),
        # New York springs forward 2026-03-08: midnight EST is 05:00Z, EDT 04:00Z
        ("2026-03", "America/New_York", utc(2026, 3, 1, 5), utc(2026, 4, 1, 4), 743),
        # New York falls back 2026-11-01 02:00 EDT: November is 30*24 + 1
        ("2026-11", "America/New_York", utc(2026, 11, 1, 4), utc(2026, 12, 1, 5), 721),
        # no DST in Tokyo: exactly 30 days, starting 15:00Z the day before
        ("2026-11", "Asia/Tokyo", utc(2026, 10, 31, 15), utc(2026, 11, 30, 15), 720),
        ("2026-11", "UTC", utc(2026, 11, 1), utc(2026, 12, 1), 720),
    ],
)
def test_period_bounds_utc_across_dst(
    period: str, tz: str, start: datetime, end: datetime, hours: int
) -> None:
    got_start, got_end = period_bounds_utc(period=parse_period(period), tz=tz)
    assert (got_start, got_end) == (start, end)
    assert got_start.tzinfo is UTC and got_end.tzinfo is UTC
    assert (got_end - got_start) / HOUR == hours


@pytest.mark.parametrize(
    "tz",
    ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Santiago", "Australia/Lord_Howe"],
)
@pytest.mark.parametrize(
    "day",
    [
        date(2026, 3, 8),
        date(2026, 3, 29),
        date(2026, 4, 5),
        date(2026, 9, 6),
        date(2026, 10, 4),
        date(2026, 11, 1),
    ],
)
def test_bounds_are_the_first_instant_of_the_local_day(tz: str, day: date) -> None:
    # Holds even where local midnight does not exist (America/Santiago jumps
    # from 24:00 to 01:00 on its DST start day).
    start, end = period_bounds_utc(period=Period(start=day, end=day + timedelta(days=1)), tz=tz)
    tick = timedelta(microseconds=1)
    assert local_date_of(ts=start, tz=tz) == day
    assert local_date_of(ts=start - tick, tz=tz) == day - timedelta(days=1)
    assert local_date_of(ts=end - tick, tz=tz) == day
    assert local_date_of(ts=end, tz=tz) == day + timedelta(days=1)


def test_santiago_dst_start_day_is_23_hours() -> None:
    start, end = period_bounds_utc(
        period=Period(start=date(2026, 9, 6), end=date(2026, 9, 7)), tz="America/Santiago"
    )
    assert (end - start) / HOUR == 23


# --------------------------------------------------------------------------- local dates


@pytest.mark.parametrize(
    ("ts", "tz", "expected"),
    [
        (utc(2026, 10, 31, 23, 30), "Asia/Tokyo", date(2026, 11, 1)),  # 08:30 JST next day
        (utc(2026, 10, 31, 14, 59, 59), "Asia/Tokyo", date(2026, 10, 31)),
        (utc(2026, 10, 31, 15), "Asia/Tokyo", date(2026, 11, 1)),  # JST midnight exactly
        (utc(2026, 11, 1, 3, 30), "America/New_York", date(2026, 10, 31)),  # 23:30 EDT
        (utc(2026, 11, 1, 4), "America/New_York", date(2026, 11, 1)),
        (utc(2026, 3, 28, 23, 30), "Europe/Berlin", date(2026, 3, 29)),
        # an aware non-UTC input is converted, not reinterpreted
        (
            utc(2026, 11, 1, 0, 30).astimezone(ZoneInfo("America/Los_Angeles")),
            "Asia/Tokyo",
            date(2026, 11, 1),
        ),
    ],
)
def test_local_date_of(ts: datetime, tz: str, expected: date) -> None:
    assert local_date_of(ts=ts, tz=tz) == expected


def test_local_date_of_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        local_date_of(ts=datetime(2026, 11, 1, 0, 0), tz="Asia/Tokyo")


# --------------------------------------------------------------------------- cadences


@pytest.mark.parametrize(
    ("local", "cadence", "anchor_day", "anchor_month", "start", "end"),
    [
        (date(2026, 3, 14), "monthly", 15, 1, date(2026, 2, 15), date(2026, 3, 15)),
        (date(2026, 3, 15), "monthly", 15, 1, date(2026, 3, 15), date(2026, 4, 15)),
        (date(2026, 1, 10), "monthly", 15, 1, date(2025, 12, 15), date(2026, 1, 15)),
        (date(2026, 12, 31), "monthly", 1, 1, date(2026, 12, 1), date(2027, 1, 1)),
        (date(2026, 2, 28), "monthly", 28, 1, date(2026, 2, 28), date(2026, 3, 28)),
        # monthly ignores anchor_month
        (date(2026, 5, 5), "monthly", 1, 7, date(2026, 5, 1), date(2026, 6, 1)),
        # calendar quarters
        (date(2026, 5, 20), "quarterly", 1, 1, date(2026, 4, 1), date(2026, 7, 1)),
        (date(2026, 4, 1), "quarterly", 1, 1, date(2026, 4, 1), date(2026, 7, 1)),
        (date(2026, 3, 31), "quarterly", 1, 1, date(2026, 1, 1), date(2026, 4, 1)),
        # quarters anchored on the 10th of Feb/May/Aug/Nov
        (date(2026, 2, 9), "quarterly", 10, 2, date(2025, 11, 10), date(2026, 2, 10)),
        (date(2026, 2, 10), "quarterly", 10, 2, date(2026, 2, 10), date(2026, 5, 10)),
        (date(2026, 12, 31), "quarterly", 10, 2, date(2026, 11, 10), date(2027, 2, 10)),
        (date(2026, 1, 1), "quarterly", 10, 11, date(2025, 11, 10), date(2026, 2, 10)),
        # fiscal year from 1 July
        (date(2026, 6, 30), "annual", 1, 7, date(2025, 7, 1), date(2026, 7, 1)),
        (date(2026, 7, 1), "annual", 1, 7, date(2026, 7, 1), date(2027, 7, 1)),
        (date(2024, 2, 29), "annual", 28, 2, date(2024, 2, 28), date(2025, 2, 28)),
        (date(2026, 1, 1), "annual", 1, 1, date(2026, 1, 1), date(2027, 1, 1)),
    ],
)
def test_period_containing(
    local: date, cadence: Cadence, anchor_day: int, anchor_month: int, start: date, end: date
) -> None:
    period = period_containing(
        local_date=local,
        cadence=cadence,
        anchor_day=anchor_day,
        anchor_month=anchor_month,
    )
    assert period == Period(start=start, end=end)
    assert local in period


@pytest.mark.parametrize(
    ("cadence", "anchor_day", "anchor_month"),
    [("monthly", 1, 1), ("quarterly", 17, 2), ("annual", 28, 12)],
)
def test_periods_tile_time_without_gaps(
    cadence: Cadence, anchor_day: int, anchor_month: int
) -> None:
    period = period_containing(
        local_date=date(2024, 1, 1),
        cadence=cadence,
        anchor_day=anchor_day,
        anchor_month=anchor_month,
    )
    for _ in range(40):
        following = period_containing(
            local_date=period.end,
            cadence=cadence,
            anchor_day=anchor_day,
            anchor_month=anchor_month,
        )
        assert following.start == period.end
        assert (
            period_containing(
                local_date=period.end - timedelta(days=1),
                cadence=cadence,
                anchor_day=anchor_day,
                anchor_month=anchor_month,
            )
            == period
        )
        period = following


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cadence": "monthly", "anchor_day": 29},
        {"cadence": "monthly", "anchor_day": 0},
        {"cadence": "weekly", "anchor_day": 1},
        {"cadence": "annual", "anchor_day": 1, "anchor_month": 13},
    ],
)
def test_period_containing_rejects_bad_anchors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        period_containing(local_date=date(2026, 1, 1), **kwargs)  # type: ignore[arg-type]  # bad on purpose


def test_period_containing_refuses_datetimes() -> None:
    with pytest.raises(TypeError):
        period_containing(
            local_date=datetime(2026, 1, 1, tzinfo=UTC), cadence="monthly", anchor_day=1
        )


# --------------------------------------------------------------------------- parsing and Period


def test_parse_period() -> None:
    assert parse_period("2026-11") == Period(start=date(2026, 11, 1), end=date(2026, 12, 1))
    assert parse_period("2026-12") == Period(start=date(2026, 12, 1), end=date(2027, 1, 1))
    assert parse_period("2028-02").days == 29
    assert str(parse_period("2026-11")) == "[2026-11-01, 2026-12-01)"


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", "", "2026/11"]
)
def test_parse_period_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period(text)


def test_period_validation() -> None:
    with pytest.raises(ValueError):
        Period(start=date(2026, 1, 1), end=date(2026, 1, 1))
    with pytest.raises(TypeError):
        Period(start=datetime(2026, 1, 1), end=date(2026, 2, 1))
    p = parse_period("2026-06")
    assert date(2026, 6, 30) in p and date(2026, 7, 1) not in p and date(2026, 5, 31) not in p


# --------------------------------------------------------------------------- proration


JUNE = parse_period("2026-06")  # 30 days


@pytest.mark.parametrize(
    ("period", "active_from", "active_to", "ratio"),
    [
        (JUNE, date(2026, 6, 11), None, Fraction(20, 30)),  # starts on the 11th: 11..30
        (JUNE, None, date(2026, 6, 11), Fraction(10, 30)),  # ends before the 11th (exclusive)
        (JUNE, date(2026, 6, 11), date(2026, 6, 21), Fraction(10, 30)),
        (JUNE, None, None, Fraction(1)),
        (JUNE, date(2026, 5, 1), date(2026, 9, 1), Fraction(1)),  # wider than the period
        (JUNE, date(2026, 7, 1), None, Fraction(0)),  # starts after
        (JUNE, None, date(2026, 6, 1), Fraction(0)),  # ended before
        (JUNE, date(2026, 6, 30), None, Fraction(1, 30)),  # last day only
        (parse_period("2028-02"), date(2028, 2, 15), None, Fraction(15, 29)),  # leap February
        (parse_period("2026-02"), date(2026, 2, 15), None, Fraction(14, 28)),
        (
            Period(start=date(2026, 1, 1), end=date(2027, 1, 1)),
            date(2026, 7, 1),
            None,
            Fraction(184, 365),
        ),
    ],
)
def test_proration(
    period: Period, active_from: date | None, active_to: date | None, ratio: Fraction
) -> None:
    assert proration_ratio(period=period, active_from=active_from, active_to=active_to) == ratio
    decimal = proration_fraction(period=period, active_from=active_from, active_to=active_to)
    assert isinstance(decimal, Decimal)
    assert decimal == Decimal(int(ratio * period.days)) / Decimal(period.days)


def test_proration_fraction_start_on_11th_is_20_over_30() -> None:
    got = proration_fraction(period=JUNE, active_from=date(2026, 6, 11), active_to=None)
    assert got == Decimal(20) / Decimal(30)
    assert str(got) == "0.6666666666666666666666666667"


def test_split_period() -> None:
    parts = split_period(
        period=JUNE,
        at=[
            date(2026, 6, 16),
            date(2026, 6, 1),
            date(2026, 7, 5),
            date(2026, 6, 16),
            date(2026, 6, 10),
        ],
    )
    assert parts == (
        Period(start=date(2026, 6, 1), end=date(2026, 6, 10)),
        Period(start=date(2026, 6, 10), end=date(2026, 6, 16)),
        Period(start=date(2026, 6, 16), end=date(2026, 7, 1)),
    )
    assert sum(p.days for p in parts) == JUNE.days
    assert (
        sum(proration_ratio(period=JUNE, active_from=p.start, active_to=p.end) for p in parts) == 1
    )
    assert split_period(period=JUNE, at=[]) == (JUNE,)
