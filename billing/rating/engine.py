"""Pure rating: usage + price-plan terms -> priced invoice lines.

No Django, no ORM, no I/O: every function here takes values and returns
frozen dataclasses, so the billing services can call it inside a transaction
and tests can call it with nothing at all.

Rounding rule
-------------
* Quantities, unit prices, rates, tier bounds and fees carry at most
  ``RATE_PLACES`` (6) decimal places.  Config or usage with more is *refused*
  (``RatingConfigError`` / ``RatingInputError``), never silently rounded.
* Every charge is computed exactly (Decimal at 50 significant digits;
  proration as an exact ``Fraction`` when given one, multiplied before it is
  divided) and rounded **once**, when it becomes ``RatedLine.amount``, to the
  currency's minor unit with the caller's named mode via
  ``billing.money.round_money`` (``ROUND_HALF_UP`` default, ``ROUND_HALF_EVEN``
  allowed).
* Usage lines of one component are rounded once per *period*: across
  amendment segments, a segment's line is the rounded running total of the
  component's exact charges minus what earlier segments' lines billed, so
  splitting a period never moves its total by a rounding cent.
* Tier breakdowns (``TierCharge.amount``) and per-event percentage fees are
  exact intermediate values shown for explanation; only the line is rounded.
* Derived lines (discounts, minimum true-ups, credit drawdowns) are computed
  from already-rounded line amounts and are rounded once themselves, so
  ``RatingResult.subtotal == sum(line.amount for line in lines)`` exactly.

Order of evaluation for one set of terms (a ``Segment``)
-------------------------------------------------------
1. Negotiated prices (``PriceOverride``) replace the plan's prices.
2. Usage lines, one per usage component: included units (``free_units``)
   come off the metered quantity first, the priced model rates the rest, the
   contract cap (``Cap``) clamps the exact charge, then the line is rounded.
3. Recurring fixed fees, prorated by the segment's ``proration``.
4. Component discounts, on the rounded lines of that component.
5. Minimum commitment true-up: ``commitment * proration`` minus the usage
   charges it covers (usage lines net of their component discounts).
6. Invoice discounts, applied in order on the running total of the segment.
Across the whole period (``rate_segments``) the prepaid balance is then drawn
down against the combined total (never below zero).

Period-level allowances across amendment segments
-------------------------------------------------
Amounts tied to time (fixed fees, minimum commitments, fixed-amount
discounts) are prorated by each segment's ``proration``.  Allowances tied to
usage (included units, caps) belong to the whole period and are consumed in
segment order, keyed by component ``code``: a segment gets what earlier
segments left of its own terms' allowance.  Graduated tiers and started
packages also fill once per period: a later segment continues from the units
earlier segments billed (under its own tier prices).  Volume pricing is the
exception: each segment's volume tier is chosen from that segment's units.  Usage is never counted twice: each
segment is rated on its own ``usages``, and segments' service periods (when
given) must not overlap.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Context, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any, Literal

from msgspec.structs import replace

from billing.money import (
    ROUND_HALF_UP,
    check_rounding,
    minor_unit,
    quantize_rate,
    round_money,
)
from billing.periods import Period
from billing.rating.config import (
    NO_OVERRIDES,
    USAGE_TYPES,
    Component,
    Discount,
    FixedFee,
    GraduatedPrice,
    MinimumCommitment,
    Overrides,
    PackagePrice,
    PercentagePrice,
    PerUnitPrice,
    PriceOverride,
    UsageComponent,
    VolumePrice,
    check_unique_codes,
)
from billing.rating.errors import (
    RatingConfigError,
    RatingError,
    RatingInputError,
    check_dec,
    fmt,
    join_path,
)

__all__ = [
    "LineKind",
    "RatedLine",
    "RatingResult",
    "Segment",
    "TierCharge",
    "Usage",
    "rate_period",
    "rate_segments",
]

ZERO = Decimal(0)
ONE = Decimal(1)
HUNDRED = Decimal(100)

# Enough digits that no product or sum of 6-place values a billing run can
# produce is ever rounded before round_money does it on purpose.
_EXACT = Context(prec=50, rounding=ROUND_HALF_UP, traps=[InvalidOperation])

LineKind = Literal["usage", "fixed_fee", "minimum_true_up", "discount", "credit_drawdown"]


# --------------------------------------------------------------------------- usage and results


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Metered usage of one metric in a period (or segment).

    ``quantity`` drives per_unit/package/graduated/volume; ``event_amounts``
    (one non-negative amount per event, e.g. payment values) drives
    percentage components.  Any iterable is accepted and stored as a tuple.
    """

    quantity: Decimal = ZERO
    event_amounts: tuple[Decimal, ...] | None = None

    def __post_init__(self) -> None:
        check_dec(self.quantity, "quantity", error=RatingInputError)
        if self.event_amounts is not None:
            if isinstance(self.event_amounts, (str, bytes)) or not isinstance(
                self.event_amounts, Iterable
            ):
                raise RatingInputError(
                    "invalid_usage", "must be an iterable of Decimals", path="event_amounts"
                )
            amounts = tuple(self.event_amounts)
            for index, amount in enumerate(amounts):
                check_dec(amount, f"event_amounts[{index}]", error=RatingInputError)
            object.__setattr__(self, "event_amounts", amounts)


@dataclass(frozen=True, kw_only=True)
class TierCharge:
    """How one tier priced a usage line.  ``from_units`` exclusive, ``to_units`` inclusive (None = infinity).

    ``amount`` = units * unit_price + flat_fee, exact (not rounded; the line is).
    """

    from_units: Decimal
    to_units: Decimal | None
    units: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class RatedLine:
    """One priced invoice line.

    * ``quantity`` is what is billed: units after included units (per_unit,
      graduated, volume), packages (package), or charged events (percentage);
      1 for fixed fees, true-ups, discounts and credits.  6 places.
    * ``unit_price`` (6 places) when ``quantity * unit_price`` explains the
      amount before any cap or proration, else ``None`` (see ``tiers``).
    * ``amount`` is rounded to the currency's minor unit; discounts and credit
      drawdowns are negative.
    * ``usage_quantity`` is the metered quantity (or event count) before
      included units; ``included_units`` how many included units this line used.
    * ``uncapped_amount`` is set (rounded) when a cap lowered the amount.
    * ``proration`` is the fraction applied (6 places, for display) on
      fixed-fee, true-up and fixed-discount lines.
    * ``segment`` is the index of the segment the line was rated in;
      ``service_period`` that segment's period when the caller gave one.
    """

    kind: LineKind
    component: str | None
    metric: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    amount: Decimal
    tiers: tuple[TierCharge, ...] = ()
    usage_quantity: Decimal | None = None
    included_units: Decimal = ZERO
    uncapped_amount: Decimal | None = None
    proration: Decimal | None = None
    segment: int = 0
    service_period: Period | None = None


@dataclass(frozen=True, kw_only=True)
class RatingResult:
    """Lines in order (usage, fixed fees, discounts, true-ups per segment, then credit),
    their exact ``subtotal`` (pre-tax, after credit) and what is left of the prepaid balance."""

    lines: tuple[RatedLine, ...]
    subtotal: Decimal
    prepaid_balance_remaining: Decimal
    minor_units: int
    rounding: str

    @property
    def total_before_credit(self) -> Decimal:
        return sum((ln.amount for ln in self.lines if ln.kind != "credit_drawdown"), ZERO)

    @property
    def credit_applied(self) -> Decimal:
        return -sum((ln.amount for ln in self.lines if ln.kind == "credit_drawdown"), ZERO)


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One stretch of a period under one set of terms (for mid-period amendments).

    ``usages`` must hold only the usage that happened inside this segment.
    ``proration`` is the segment's share of the period (``periods.proration_ratio``).
    """

    components: tuple[Component, ...]
    usages: Mapping[str, Usage]
    proration: Decimal | Fraction = ONE
    overrides: Overrides | None = None
    service_period: Period | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))


# --------------------------------------------------------------------------- engine


@dataclass
class _PeriodState:
    """Period-level allowances consumed across segments, keyed by component code."""

    free_units_used: dict[str, Decimal] = field(default_factory=dict)
    usage_charged: dict[str, Decimal] = field(default_factory=dict)  # rounded line amounts so far
    usage_exact: dict[str, Decimal] = field(default_factory=dict)  # exact (capped) charges so far
    units_billed: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class _Charge:
    raw: Decimal
    quantity: Decimal
    unit_price: Decimal | None
    tiers: tuple[TierCharge, ...]
    detail: str


def _as_fraction(proration: Decimal | Fraction, path: str) -> Fraction:
    if isinstance(proration, bool) or not isinstance(proration, Decimal | Fraction | int):
        raise RatingInputError(
            "invalid_argument", "must be a Decimal or Fraction between 0 and 1", path=path
        )
    if isinstance(proration, Decimal) and not proration.is_finite():
        raise RatingInputError("invalid_argument", "must be finite", path=path)
    value = Fraction(proration)
    if not 0 <= value <= 1:
        raise RatingInputError(
            "invalid_argument", f"must be between 0 and 1, got {proration}", path=path
        )
    return value


def _prorate(amount: Decimal, fraction: Fraction) -> Decimal:
    """``amount * fraction`` exactly up to 50 digits: multiply first, divide last."""
    if fraction == 1:
        return amount
    return amount * Decimal(fraction.numerator) / Decimal(fraction.denominator)


def _show_fraction(fraction: Fraction) -> Decimal:
    return quantize_rate(Decimal(fraction.numerator) / Decimal(fraction.denominator))


def _charge_per_unit(c: PerUnitPrice, billable: Decimal) -> _Charge:
    return _Charge(
        raw=billable * c.unit_price,
        quantity=billable,
        unit_price=c.unit_price,
        tiers=(),
        detail=f"{fmt(billable)} × {fmt(c.unit_price)}",
    )


def _charge_package(c: PackagePrice, billable: Decimal, *, offset: Decimal) -> _Charge:
    """Packages started by units ``(offset, offset + billable]``.

    ``offset`` is what earlier segments of the period already billed, so a
    package opened before an amendment is not billed again after it.
    """

    def started(units: Decimal) -> Decimal:
        return (units / c.package_size).to_integral_value(rounding=ROUND_CEILING)

    packages = started(offset + billable) - started(offset)
    return _Charge(
        raw=packages * c.package_price,
        quantity=packages,
        unit_price=c.package_price,
        tiers=(),
        detail=f"{fmt(packages)} package(s) of {fmt(c.package_size)} × {fmt(c.package_price)}",
    )


def _charge_graduated(c: GraduatedPrice, billable: Decimal, *, offset: Decimal) -> _Charge:
    """Price units ``(offset, offset + billable]`` through the tiers.

    ``offset`` is what earlier segments of the period already billed: a
    period's tiers fill once, not once per amendment segment, and a tier's
    flat fee is charged by the segment whose units first enter the tier.
    """
    breakdown: list[TierCharge] = []
    start, end = offset, offset + billable
    lower = ZERO
    for tier in c.tiers:
        upper = tier.up_to
        units = (end if upper is None else min(end, upper)) - max(start, lower)
        if units > 0:
            flat_fee = tier.flat_fee if start <= lower else ZERO
            breakdown.append(
                TierCharge(
                    from_units=lower,
                    to_units=upper,
                    units=units,
                    unit_price=tier.unit_price,
                    flat_fee=flat_fee,
                    amount=units * tier.unit_price + flat_fee,
                )
            )
        if upper is None or end <= upper:
            break
        lower = upper
    raw = sum((t.amount for t in breakdown), ZERO)
    return _Charge(
        raw=raw,
        quantity=billable,
        unit_price=None,
        tiers=tuple(breakdown),
        detail=f"{fmt(billable)} units, graduated",
    )


def _charge_volume(c: VolumePrice, billable: Decimal) -> _Charge:
    if billable == 0:
        return _Charge(raw=ZERO, quantity=ZERO, unit_price=None, tiers=(), detail="0 units")
    lower = ZERO
    for tier in c.tiers:
        if tier.up_to is None or billable <= tier.up_to:
            amount = billable * tier.unit_price + tier.flat_fee
            breakdown = TierCharge(
                from_units=lower,
                to_units=tier.up_to,
                units=billable,
                unit_price=tier.unit_price,
                flat_fee=tier.flat_fee,
                amount=amount,
            )
            fee = f" + {fmt(tier.flat_fee)}" if tier.flat_fee else ""
            return _Charge(
                raw=amount,
                quantity=billable,
                unit_price=tier.unit_price,
                tiers=(breakdown,),
                detail=f"{fmt(billable)} × {fmt(tier.unit_price)}{fee} (volume tier up to {fmt(tier.up_to) if tier.up_to is not None else '∞'})",
            )
        lower = tier.up_to
    raise AssertionError("the last tier is unbounded; validation guarantees it")  # pragma: no cover


def _event_fee(c: PercentagePrice, amount: Decimal) -> Decimal:
    fee = amount * c.rate + c.fixed_fee
    if c.min_fee is not None and fee < c.min_fee:
        fee = c.min_fee
    if c.max_fee is not None and fee > c.max_fee:
        fee = c.max_fee
    return fee


def _rate_usage(
    c: UsageComponent,
    usage: Usage,
    *,
    cap: Decimal | None,
    state: _PeriodState,
    minor_units: int,
    rounding: str,
    segment: int,
    service_period: Period | None,
) -> RatedLine:
    free_left = max(ZERO, c.free_units - state.free_units_used.get(c.code, ZERO))
    if isinstance(c, PercentagePrice):
        if usage.event_amounts is None:
            if usage.quantity != 0:
                raise RatingInputError(
                    "missing_event_amounts",
                    f"component {c.code!r} is a percentage of event amounts; Usage.event_amounts is required",
                    path=c.metric,
                )
            events: tuple[Decimal, ...] = ()
        else:
            events = usage.event_amounts
        metered = Decimal(len(events))
        free_events = int(min(free_left, metered))  # whole events: free_units is an integer here
        charged = events[free_events:]
        used_free = Decimal(free_events)
        raw = sum((_event_fee(c, amount) for amount in charged), ZERO)
        base = sum(charged, ZERO)
        charge = _Charge(
            raw=raw,
            quantity=Decimal(len(charged)),
            unit_price=None,
            tiers=(),
            detail=f"{len(charged)} event(s) totalling {fmt(quantize_rate(base))} at {fmt(c.rate * HUNDRED)}%"
            + (f" + {fmt(c.fixed_fee)} each" if c.fixed_fee else ""),
        )
    else:
        metered = usage.quantity
        used_free = min(free_left, metered)
        billable = metered - used_free
        offset = state.units_billed.get(c.code, ZERO)
        state.units_billed[c.code] = offset + billable
        if isinstance(c, PerUnitPrice):
            charge = _charge_per_unit(c, billable)
        elif isinstance(c, PackagePrice):
            charge = _charge_package(c, billable, offset=offset)
        elif isinstance(c, GraduatedPrice):
            charge = _charge_graduated(c, billable, offset=offset)
        else:
            charge = _charge_volume(c, billable)
    state.free_units_used[c.code] = state.free_units_used.get(c.code, ZERO) + used_free

    raw = charge.raw
    uncapped: Decimal | None = None
    detail = charge.detail
    if cap is not None:
        cap_left = max(ZERO, cap - state.usage_exact.get(c.code, ZERO))
        if raw > cap_left:
            uncapped = round_money(raw, minor_units=minor_units, rounding=rounding)
            raw = cap_left
            detail += f", capped at {cap} per period"
    # Rounded once per component and period: a later segment's line is the rounded running
    # total minus what earlier segments' lines already billed, so splitting a period into
    # segments never changes the sum by a rounding cent.
    exact_before = state.usage_exact.get(c.code, ZERO)
    billed_before = state.usage_charged.get(c.code, ZERO)
    amount = (
        round_money(exact_before + raw, minor_units=minor_units, rounding=rounding) - billed_before
    )
    amount = amount.copy_abs() if amount.is_zero() else amount
    state.usage_exact[c.code] = exact_before + raw
    state.usage_charged[c.code] = state.usage_charged.get(c.code, ZERO) + amount
    if used_free:
        detail += f" ({fmt(used_free)} included)"
    return RatedLine(
        kind="usage",
        component=c.code,
        metric=c.metric,
        description=f"{c.label}: {detail}",
        quantity=quantize_rate(charge.quantity),
        unit_price=None if charge.unit_price is None else quantize_rate(charge.unit_price),
        amount=amount,
        tiers=charge.tiers,
        usage_quantity=quantize_rate(metered),
        included_units=quantize_rate(used_free),
        uncapped_amount=uncapped,
        segment=segment,
        service_period=service_period,
    )


def _discount_value(
    d: Discount, base: Decimal, fraction: Fraction, *, minor_units: int, rounding: str
) -> tuple[Decimal, str, Decimal | None]:
    """Positive discount (rounded), its description suffix, and the proration shown (or None)."""
    if base <= 0:
        return ZERO, "", None
    if d.percent_off is not None:
        value = round_money(
            base * d.percent_off / HUNDRED, minor_units=minor_units, rounding=rounding
        )
        return min(value, base), f"{fmt(d.percent_off)}% off {base}", None
    assert d.amount_off is not None
    value = round_money(
        _prorate(d.amount_off, fraction), minor_units=minor_units, rounding=rounding
    )
    shown = None if fraction == 1 else _show_fraction(fraction)
    return min(value, base), f"{d.amount_off} off", shown


def _apply_price_override(c: Component, o: PriceOverride) -> Component:
    def mismatch(wanted: str) -> RatingConfigError:
        return RatingConfigError(
            "override_mismatch",
            f"component {c.code!r} is {c.type}; override it with {wanted}",
            path=f"prices[{o.component}]",
        )

    if isinstance(c, PerUnitPrice):
        if o.unit_price is None:
            raise mismatch("unit_price")
        return replace(c, unit_price=o.unit_price)
    if isinstance(c, PackagePrice):
        if o.package_price is None:
            raise mismatch("package_price")
        return replace(c, package_price=o.package_price)
    if isinstance(c, GraduatedPrice | VolumePrice):
        if o.tiers is not None:
            return replace(c, tiers=o.tiers)
        if o.unit_price is not None:
            return replace(c, tiers=tuple(replace(t, unit_price=o.unit_price) for t in c.tiers))
        raise mismatch("tiers or unit_price")
    if isinstance(c, PercentagePrice):
        if o.rate is None:
            raise mismatch("rate")
        return replace(c, rate=o.rate)
    if o.amount is None:
        raise mismatch("amount")
    return replace(c, amount=o.amount)


@dataclass(frozen=True)
class _Terms:
    """One segment's terms after step 1: the plan's components with the negotiated prices in."""

    components: tuple[Component, ...]
    by_code: dict[str, Component]
    overrides: Overrides
    caps: dict[str, Decimal]
    fraction: Fraction


@dataclass(frozen=True)
class _Rounding:
    minor_units: int
    rounding: str
    segment: int
    service_period: Period | None

    def money(self, value: Decimal) -> Decimal:
        return round_money(value, minor_units=self.minor_units, rounding=self.rounding)

    def line(self, **values: Any) -> RatedLine:
        """A derived line (fixed fee, discount, true-up): billed once, quantity 1."""
        return RatedLine(
            quantity=quantize_rate(ONE),
            segment=self.segment,
            service_period=self.service_period,
            **values,
        )


def _segment_terms(seg: Segment) -> _Terms:
    """Step 1: check the overrides against the plan and put the negotiated prices in."""
    check_unique_codes(seg.components)
    overrides = seg.overrides if seg.overrides is not None else NO_OVERRIDES
    if not isinstance(overrides, Overrides):
        raise RatingInputError("invalid_argument", "must be an Overrides", path="overrides")
    fraction = _as_fraction(seg.proration, "proration")
    by_code = {c.code: c for c in seg.components}
    for name, items in (
        ("prices", overrides.prices),
        ("discounts", overrides.discounts),
        ("caps", overrides.caps),
    ):
        for item in items:
            if item.component is not None and item.component not in by_code:
                raise RatingConfigError(
                    "unknown_component",
                    f"override names component {item.component!r}, which is not in the price plan",
                    path=f"overrides.{name}",
                )
    for cap in overrides.caps:
        if not isinstance(by_code[cap.component], USAGE_TYPES):
            raise RatingConfigError(
                "override_mismatch",
                f"caps apply to usage components; {cap.component!r} is not one",
                path="overrides.caps",
            )
    for discount in overrides.discounts:
        if discount.component is not None and isinstance(
            by_code[discount.component], MinimumCommitment
        ):
            raise RatingConfigError(
                "override_mismatch",
                f"discount the usage components instead of minimum {discount.component!r}",
                path="overrides.discounts",
            )
    for price in overrides.prices:
        by_code[price.component] = _apply_price_override(by_code[price.component], price)
    for metric, usage in seg.usages.items():
        if not isinstance(usage, Usage):
            raise RatingInputError(
                "invalid_usage", f"expected Usage, got {type(usage).__name__}", path=str(metric)
            )
    return _Terms(
        components=tuple(by_code[c.code] for c in seg.components),
        by_code=by_code,
        overrides=overrides,
        caps={cap.component: cap.max_amount for cap in overrides.caps},
        fraction=fraction,
    )


def _usage_lines(
    terms: _Terms, usages: Mapping[str, Usage], *, state: _PeriodState, r: _Rounding
) -> list[RatedLine]:
    """Step 2: one line per usage component (included units, priced model, cap, rounding)."""
    return [
        _rate_usage(
            c,
            usages.get(c.metric, Usage()),
            cap=terms.caps.get(c.code),
            state=state,
            minor_units=r.minor_units,
            rounding=r.rounding,
            segment=r.segment,
            service_period=r.service_period,
        )
        for c in terms.components
        if isinstance(c, USAGE_TYPES)
    ]


def _fixed_fee_lines(terms: _Terms, *, r: _Rounding) -> list[RatedLine]:
    """Step 3: recurring fixed fees, prorated by the segment's share unless ``prorate`` is off."""
    lines = []
    for c in terms.components:
        if not isinstance(c, FixedFee):
            continue
        applied = terms.fraction if c.prorate else Fraction(1)
        shown = None if applied == 1 else _show_fraction(applied)
        suffix = "" if shown is None else f" (prorated {applied.numerator}/{applied.denominator})"
        lines.append(
            r.line(
                kind="fixed_fee",
                component=c.code,
                metric=None,
                description=f"{c.label}{suffix}",
                unit_price=quantize_rate(c.amount),
                amount=r.money(_prorate(c.amount, applied)),
                proration=shown,
            )
        )
    return lines


def _component_discount_lines(
    terms: _Terms, lines: Sequence[RatedLine], *, r: _Rounding
) -> list[RatedLine]:
    """Step 4: component discounts, on the rounded lines of that component.

    Each discount's base is net of the earlier discounts on the same
    component, so stacked discounts never take it below zero.
    """
    so_far = list(lines)
    added = []
    for d in terms.overrides.discounts:
        if d.component is None:
            continue
        base = sum((ln.amount for ln in so_far if ln.component == d.component), ZERO)
        value, what, shown = _discount_value(
            d, base, terms.fraction, minor_units=r.minor_units, rounding=r.rounding
        )
        if value:
            component = terms.by_code[d.component]
            line = r.line(
                kind="discount",
                component=d.component,
                metric=getattr(component, "metric", None),
                description=d.description or f"Discount on {component.label}: {what}",
                unit_price=None,
                amount=-value,
                proration=shown,
            )
            so_far.append(line)
            added.append(line)
    return added


def _minimum_true_up_lines(
    terms: _Terms, lines: Sequence[RatedLine], *, r: _Rounding
) -> list[RatedLine]:
    """Step 5: ``commitment * proration`` minus the usage it covers, net of component discounts."""
    added = []
    fraction = terms.fraction
    for c in terms.components:
        if not isinstance(c, MinimumCommitment):
            continue
        covered = {
            u.code
            for u in terms.components
            if isinstance(u, USAGE_TYPES) and (c.metrics is None or u.metric in c.metrics)
        }
        spent = sum(
            (
                ln.amount
                for ln in lines
                if ln.component in covered and ln.kind in ("usage", "discount")
            ),
            ZERO,
        )
        required = _prorate(c.amount, fraction)
        if spent >= required:
            continue
        amount = r.money(required - spent)
        if not amount:
            continue
        shown = None if fraction == 1 else _show_fraction(fraction)
        prorated = "" if shown is None else f" prorated {fraction.numerator}/{fraction.denominator}"
        added.append(
            r.line(
                kind="minimum_true_up",
                component=c.code,
                metric=None,
                description=f"{c.label}: minimum {c.amount}{prorated}, usage {spent}",
                unit_price=None,
                amount=amount,
                proration=shown,
            )
        )
    return added


def _invoice_discount_lines(
    terms: _Terms, lines: Sequence[RatedLine], *, r: _Rounding
) -> list[RatedLine]:
    """Step 6: invoice discounts, in order, each on the running total of the segment."""
    running = sum((ln.amount for ln in lines), ZERO)
    added = []
    for d in terms.overrides.discounts:
        if d.component is not None:
            continue
        value, what, shown = _discount_value(
            d, running, terms.fraction, minor_units=r.minor_units, rounding=r.rounding
        )
        if value:
            added.append(
                r.line(
                    kind="discount",
                    component=None,
                    metric=None,
                    description=d.description or f"Invoice discount: {what}",
                    unit_price=None,
                    amount=-value,
                    proration=shown,
                )
            )
            running -= value
    return added


def _rate_segment(
    seg: Segment,
    *,
    index: int,
    state: _PeriodState,
    minor_units: int,
    rounding: str,
) -> list[RatedLine]:
    """The six steps of the module docstring, in order, for one segment."""
    terms = _segment_terms(seg)
    r = _Rounding(
        minor_units=minor_units,
        rounding=rounding,
        segment=index,
        service_period=seg.service_period,
    )
    lines = _usage_lines(terms, seg.usages, state=state, r=r)
    lines += _fixed_fee_lines(terms, r=r)
    lines += _component_discount_lines(terms, lines, r=r)
    lines += _minimum_true_up_lines(terms, lines, r=r)
    lines += _invoice_discount_lines(terms, lines, r=r)
    return lines


def rate_segments(
    *,
    segments: Sequence[Segment],
    minor_units: int,
    rounding: str = ROUND_HALF_UP,
    prepaid_balance: Decimal = ZERO,
) -> RatingResult:
    """Rate a period whose terms changed mid-period: each segment under its own terms.

    Each segment brings its own components, overrides, the usage that
    happened inside it and its share of the period (``proration``).  Lines
    are concatenated in segment order; included units and caps are shared
    across segments by component code; the prepaid balance is drawn down
    once, against the combined total.  Segment prorations must not add up
    to more than 1, and their ``service_period``\\s, when given, must not overlap.
    """
    minor_unit(minor_units)  # validates
    check_rounding(rounding)
    if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence) or not segments:
        raise RatingInputError(
            "invalid_argument", "segments must be a non-empty sequence of Segment", path="segments"
        )
    for index, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise RatingInputError(
                "invalid_argument", "expected a Segment", path=f"segments[{index}]"
            )
    check_dec(prepaid_balance, "prepaid_balance", places=minor_units, error=RatingInputError)

    with localcontext(_EXACT):
        total_share = sum(
            (_as_fraction(s.proration, f"segments[{i}].proration") for i, s in enumerate(segments)),
            Fraction(0),
        )
        if total_share > 1:
            raise RatingInputError(
                "overlapping_segments",
                f"segment prorations add up to {total_share}, more than the whole period",
            )
        periods = sorted(
            (s.service_period, i) for i, s in enumerate(segments) if s.service_period is not None
        )
        for (a, ia), (b, ib) in itertools.pairwise(periods):
            if a.overlaps(b):
                raise RatingInputError(
                    "overlapping_segments",
                    f"segments {ia} {a} and {ib} {b} overlap: usage would be counted twice",
                )

        state = _PeriodState()
        lines: list[RatedLine] = []
        for index, seg in enumerate(segments):
            try:
                lines.extend(
                    _rate_segment(
                        seg, index=index, state=state, minor_units=minor_units, rounding=rounding
                    )
                )
            except RatingError as exc:
                prefix = f"segments[{index}]" if len(segments) > 1 else ""
                raise type(exc)(exc.code, exc.message, path=join_path(prefix, exc.path)) from None

        total = sum((ln.amount for ln in lines), ZERO)
        # round_money only fixes the exponent here (both sides are already whole
        # minor units), so a balance given as Decimal("100") yields "-100.00".
        drawdown = round_money(
            min(prepaid_balance, max(total, ZERO)), minor_units=minor_units, rounding=rounding
        )
        if drawdown > 0:
            lines.append(
                RatedLine(
                    kind="credit_drawdown",
                    component=None,
                    metric=None,
                    description=f"Prepaid credit applied (balance {prepaid_balance})",
                    quantity=quantize_rate(ONE),
                    unit_price=None,
                    amount=-drawdown,
                    segment=len(segments) - 1,
                )
            )
        subtotal = sum((ln.amount for ln in lines), ZERO)
        return RatingResult(
            lines=tuple(lines),
            subtotal=round_money(
                subtotal, minor_units=minor_units, rounding=rounding
            ),  # exact already; fixes exponent
            prepaid_balance_remaining=round_money(
                prepaid_balance - drawdown, minor_units=minor_units, rounding=rounding
            ),
            minor_units=minor_units,
            rounding=rounding,
        )


def rate_period(
    *,
    components: Sequence[Component],
    usages: Mapping[str, Usage],
    minor_units: int,
    rounding: str = ROUND_HALF_UP,
    proration: Decimal | Fraction = ONE,
    overrides: Overrides | None = None,
    prepaid_balance: Decimal = ZERO,
) -> RatingResult:
    """Rate one period under one set of terms.

    ``usages`` maps metric code -> ``Usage`` (a missing metric is zero usage).
    ``proration`` is the share of the period the contract is active
    (``periods.proration_ratio`` / ``proration_fraction``); it scales fixed
    fees, minimum commitments and fixed-amount discounts, not usage.
    ``prepaid_balance`` (in the currency, at most ``minor_units`` places) is
    drawn down against the total; see ``RatingResult.prepaid_balance_remaining``.
    """
    return rate_segments(
        segments=(
            Segment(
                components=tuple(components),
                usages=usages,
                proration=proration,
                overrides=overrides,
            ),
        ),
        minor_units=minor_units,
        rounding=rounding,
        prepaid_balance=prepaid_balance,
    )
