"""Contract terms over time -> what to rate for one contract period (pure, no ORM).

A contract's terms are its initial (plan, overrides) plus amendments, each
effective from a local date; a price plan's prices are versions, each
effective from a local date.  For a contract period this module cuts the
period's *active* part (inside [start_date, end_date)) at every amendment and
plan-version date, so each piece is rated under the terms in force, and its
usage window is exactly that piece: no usage is lost or counted twice across
a change.

Fixed fees are billed in advance: the invoice of period P carries the fees of
the next period (prorated when the contract ends inside it), and, for the
contract's first period, the fees of P itself (prorated from the start date).
Usage, minimum commitments and discounts are billed in arrears for P.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from billing.periods import Cadence, Period, period_bounds_utc, period_containing, proration_ratio
from billing.rating import (
    Component,
    Discount,
    FixedFee,
    Overrides,
    components_from_config,
    overrides_from_dict,
)


@dataclass(frozen=True)
class PlanVersionTerms:
    version_id: int
    effective_from: date
    components: tuple[Component, ...]
    component_meta: Mapping[str, Any]


@dataclass(frozen=True)
class TermsChange:
    """Terms from `effective_from`: the plan to use and the overrides (JSON form)."""

    effective_from: date
    plan_id: int
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class ContractTerms:
    contract_id: int
    customer_id: int
    start_date: date
    end_date: date | None
    cadence: Cadence
    anchor_day: int
    anchor_month: int
    changes: tuple[TermsChange, ...]  # sorted, the first at start_date

    def active(self, period: Period) -> Period | None:
        start = max(period.start, self.start_date)
        end = period.end if self.end_date is None else min(period.end, self.end_date)
        return Period(start=start, end=end) if start < end else None

    def period_of(self, day: date) -> Period:
        return period_containing(
            local_date=day,
            cadence=self.cadence,
            anchor_day=self.anchor_day,
            anchor_month=self.anchor_month,
        )


@dataclass(frozen=True)
class Piece:
    """A stretch of a period under one set of terms."""

    period: Period  # the piece's local dates
    proration: Fraction  # its share of the whole period
    plan_id: int
    version: PlanVersionTerms
    overrides: Overrides


@dataclass
class PlanCache:
    """Parsed plan versions and overrides, so 10,000 contracts on 20 plans parse 20 plans."""

    versions: dict[int, list[PlanVersionTerms]] = field(default_factory=dict)
    default_tax_codes: dict[int, str] = field(default_factory=dict)
    _overrides: dict[str, Overrides] = field(default_factory=dict)

    def add_version(
        self,
        *,
        plan_id: int,
        version_id: int,
        effective_from: date,
        components: Any,
        component_meta: Any,
    ) -> None:
        self.versions.setdefault(plan_id, []).append(
            PlanVersionTerms(
                version_id=version_id,
                effective_from=effective_from,
                components=components_from_config(components),
                component_meta=component_meta or {},
            )
        )
        self.versions[plan_id].sort(key=lambda v: v.effective_from)

    def overrides(self, raw: Mapping[str, Any]) -> Overrides:
        import json

        key = json.dumps(raw, sort_keys=True)
        if key not in self._overrides:
            self._overrides[key] = overrides_from_dict(raw or {})
        return self._overrides[key]

    def version_at(self, plan_id: int, day: date) -> PlanVersionTerms | None:
        found = None
        for v in self.versions.get(plan_id, ()):
            if v.effective_from <= day:
                found = v
        return found


class TermsError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pieces_of(*, terms: ContractTerms, period: Period, plans: PlanCache) -> list[Piece]:
    """The active part of `period` cut at amendment and plan-version dates (empty if inactive)."""
    active = terms.active(period)
    if active is None:
        return []
    cuts: set[date] = {active.start}
    for change in terms.changes:
        if active.start < change.effective_from < active.end:
            cuts.add(change.effective_from)
    # plan versions of every plan in force inside the active range
    for change in terms.changes:
        for v in plans.versions.get(change.plan_id, ()):
            if active.start < v.effective_from < active.end:
                cuts.add(v.effective_from)
    bounds = [*sorted(cuts), active.end]
    pieces: list[Piece] = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        in_force: TermsChange | None = None
        for c in terms.changes:
            if c.effective_from <= start:
                in_force = c
        if in_force is None:  # before the first terms: cannot happen for start >= start_date
            raise TermsError("no_terms", f"contract {terms.contract_id} has no terms on {start}")
        change = in_force
        version = plans.version_at(change.plan_id, start)
        if version is None:
            raise TermsError(
                "no_plan_version", f"plan {change.plan_id} has no version in force on {start}"
            )
        # a plan-version cut that does not belong to this plan gives two pieces with the same terms; merge
        overrides = plans.overrides(change.overrides)
        if (
            pieces
            and pieces[-1].plan_id == change.plan_id
            and pieces[-1].version is version
            and pieces[-1].overrides is overrides
        ):
            prev = pieces[-1]
            merged = Period(start=prev.period.start, end=end)
            pieces[-1] = Piece(
                period=merged,
                proration=proration_ratio(
                    period=period, active_from=merged.start, active_to=merged.end
                ),
                plan_id=prev.plan_id,
                version=prev.version,
                overrides=prev.overrides,
            )
            continue
        piece_period = Period(start=start, end=end)
        pieces.append(
            Piece(
                period=piece_period,
                proration=proration_ratio(period=period, active_from=start, active_to=end),
                plan_id=change.plan_id,
                version=version,
                overrides=overrides,
            )
        )
    return pieces


def period_ending_in(*, terms: ContractTerms, month: Period) -> Period | None:
    """The contract period whose (exclusive) end falls in (month.start, month.end], if any."""
    last_day = month.end - timedelta(days=1)
    p = terms.period_of(last_day)
    if p.end == month.end:
        return p
    if month.start < p.start <= last_day:
        return terms.period_of(p.start - timedelta(days=1))
    return None


def fee_periods(*, terms: ContractTerms, period: Period) -> list[Period]:
    """Periods whose fixed fees the invoice of `period` carries (in advance)."""
    out = []
    if terms.start_date >= period.start:  # first period: nobody billed it in advance
        out.append(period)
    following = terms.period_of(period.end)
    if terms.active(following) is not None:
        out.append(following)
    return out


def split_for_arrears(
    components: Sequence[Component], overrides: Overrides
) -> tuple[tuple[Component, ...], Overrides]:
    """Components and overrides rated in arrears: everything but fixed fees."""
    fee_codes = {c.code for c in components if isinstance(c, FixedFee)}
    kept = tuple(c for c in components if c.code not in fee_codes)
    return kept, Overrides(
        prices=tuple(p for p in overrides.prices if p.component not in fee_codes),
        discounts=tuple(d for d in overrides.discounts if d.component not in fee_codes),
        caps=overrides.caps,
    )


def split_for_fees(
    components: Sequence[Component], overrides: Overrides
) -> tuple[tuple[Component, ...], Overrides]:
    """Fixed fees with their price overrides, component discounts and invoice percentage discounts.

    Invoice-level *amount* discounts are taken once, in arrears.
    """
    fees = tuple(c for c in components if isinstance(c, FixedFee))
    codes = {c.code for c in fees}
    discounts: list[Discount] = [
        d
        for d in overrides.discounts
        if d.component in codes or (d.component is None and d.percent_off is not None)
    ]
    return fees, Overrides(
        prices=tuple(p for p in overrides.prices if p.component in codes),
        discounts=tuple(discounts),
        caps=(),
    )


def window_utc(*, period: Period, tz: str) -> tuple[datetime, datetime]:
    return period_bounds_utc(period=period, tz=tz)
