"""billing.rating: properties that must hold for any plan and any usage (hypothesis, no Django)."""

from __future__ import annotations

from msgspec.structs import replace
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.money import round_money
from billing.rating import (
    Cap,
    Component,
    Discount,
    FixedFee,
    GraduatedPrice,
    MinimumCommitment,
    Overrides,
    PackagePrice,
    PercentagePrice,
    PerUnitPrice,
    RatingResult,
    Segment,
    Tier,
    Usage,
    VolumePrice,
    component_from_dict,
    rate_period,
    rate_segments,
)

D = Decimal
BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Whole random plans are costly to generate (not to rate: ~0.2 ms a plan), so
# the plan-level properties run fewer, richer examples to stay within seconds.
PLANS = settings(BOUNDED, max_examples=100)


def dec(
    max_value: int | str, *, places: int = 6, min_value: int | str = 0
) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=D(min_value),
        max_value=D(max_value),
        places=places,
        allow_nan=False,
        allow_infinity=False,
    )


quantities = dec(10**7)
prices = dec(100)
fees = dec(50)
minor_units = st.sampled_from([0, 2, 3])
roundings = st.sampled_from([ROUND_HALF_UP, ROUND_HALF_EVEN])


@st.composite
def tier_lists(draw: st.DrawFn, *, places: int = 6) -> tuple[Tier, ...]:
    bounds = draw(
        st.lists(dec(10**6, places=places, min_value="0.000001"), max_size=3, unique=True)
    )
    tiers = [
        Tier(
            up_to=b, unit_price=draw(dec(100, places=places)), flat_fee=draw(dec(50, places=places))
        )
        for b in sorted(bounds)
    ]
    tiers.append(
        Tier(
            up_to=None,
            unit_price=draw(dec(100, places=places)),
            flat_fee=draw(dec(50, places=places)),
        )
    )
    return tuple(tiers)


@st.composite
def percentage_components(
    draw: st.DrawFn, code: str = "pay", metric: str = "payments"
) -> PercentagePrice:
    low = draw(st.none() | fees)
    high = draw(st.none() | fees)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return PercentagePrice(
        code=code,
        metric=metric,
        rate=draw(dec(1)),
        fixed_fee=draw(dec(5)),
        min_fee=low,
        max_fee=high,
        free_units=D(draw(st.integers(0, 3))),
    )


def usage_components(code: str) -> st.SearchStrategy[Component]:
    metric = f"m_{code}"
    free = dec(1000)
    return st.one_of(
        st.builds(
            PerUnitPrice,
            code=st.just(code),
            metric=st.just(metric),
            unit_price=prices,
            free_units=free,
        ),
        st.builds(
            PackagePrice,
            code=st.just(code),
            metric=st.just(metric),
            package_size=dec(10**4, min_value="0.000001"),
            package_price=prices,
            free_units=free,
        ),
        st.builds(
            GraduatedPrice,
            code=st.just(code),
            metric=st.just(metric),
            tiers=tier_lists(),
            free_units=free,
        ),
        st.builds(
            VolumePrice,
            code=st.just(code),
            metric=st.just(metric),
            tiers=tier_lists(),
            free_units=free,
        ),
        percentage_components(code=code, metric=metric),
    )


@st.composite
def plans(draw: st.DrawFn) -> tuple[list[Component], dict[str, Usage], Overrides]:
    n_usage = draw(st.integers(1, 3))
    components: list[Component] = [draw(usage_components(f"u{i}")) for i in range(n_usage)]
    if draw(st.booleans()):
        components.append(
            FixedFee(code="fee", amount=draw(dec(1000, places=2)), prorate=draw(st.booleans()))
        )
    if draw(st.booleans()):
        # components[0] is a usage component (n_usage >= 1), which has a metric
        metrics = draw(st.none() | st.just((components[0].metric,)))  # type: ignore[union-attr]
        components.append(
            MinimumCommitment(code="min", amount=draw(dec(5000, places=2)), metrics=metrics)
        )
    usages: dict[str, Usage] = {}
    for c in components:
        if isinstance(c, PercentagePrice):
            amounts = draw(st.lists(dec(10**4, places=2), max_size=5))
            usages[c.metric] = Usage(quantity=D(len(amounts)), event_amounts=tuple(amounts))
        elif hasattr(c, "metric"):
            usages[c.metric] = Usage(quantity=draw(quantities))
    usage_codes = [c.code for c in components[:n_usage]]
    discount_targets = [*[c.code for c in components if not isinstance(c, MinimumCommitment)], None]
    discounts = draw(
        st.lists(
            st.builds(
                Discount,
                component=st.sampled_from(discount_targets),
                percent_off=dec(100, places=2),
            )
            | st.builds(
                Discount,
                component=st.sampled_from(discount_targets),
                amount_off=dec(500, places=2),
            ),
            max_size=3,
        )
    )
    cap_codes = draw(st.lists(st.sampled_from(usage_codes), unique=True, max_size=len(usage_codes)))
    caps = tuple(Cap(component=code, max_amount=draw(dec(10**4, places=2))) for code in cap_codes)
    return components, usages, Overrides(discounts=tuple(discounts), caps=caps)


prorations = st.fractions(min_value=0, max_value=1, max_denominator=31)


# ---------------------------------------------------------------- graduated is monotone


@BOUNDED
@given(
    tiers=tier_lists(),
    free=dec(1000),
    a=quantities,
    b=quantities,
    minor=minor_units,
    rounding=roundings,
)
def test_graduated_charge_never_falls_when_usage_grows(
    tiers: tuple[Tier, ...], free: Decimal, a: Decimal, b: Decimal, minor: int, rounding: str
) -> None:
    low, high = sorted((a, b))
    plan = [GraduatedPrice(code="g", metric="g", tiers=tiers, free_units=free)]

    def charge(q: Decimal) -> Decimal:
        return rate_period(
            components=plan, usages={"g": Usage(quantity=q)}, minor_units=minor, rounding=rounding
        ).subtotal

    assert charge(low) <= charge(high)


@BOUNDED
@given(tiers=tier_lists(), q=quantities)
def test_graduated_breakdown_adds_up_and_covers_the_units(
    tiers: tuple[Tier, ...], q: Decimal
) -> None:
    (line,) = rate_period(
        components=[GraduatedPrice(code="g", metric="g", tiers=tiers)],
        usages={"g": Usage(quantity=q)},
        minor_units=2,
    ).lines
    assert sum((t.units for t in line.tiers), D(0)) == q
    assert line.amount == round_money(sum((t.amount for t in line.tiers), D(0)), minor_units=2)


# ---------------------------------------------------------------- whole-result invariants


def _check_result(result: RatingResult, *, minor: int, prepaid: Decimal) -> None:
    assert result.subtotal == sum((ln.amount for ln in result.lines), D(0))
    assert result.subtotal >= 0
    assert result.prepaid_balance_remaining == prepaid - result.credit_applied
    assert 0 <= result.prepaid_balance_remaining <= prepaid
    for line in result.lines:
        assert line.amount.as_tuple().exponent == -minor
        if line.kind in ("usage", "fixed_fee", "minimum_true_up"):
            assert line.amount >= 0
        else:
            assert line.amount < 0


@PLANS
@given(
    plan=plans(),
    minor=minor_units,
    rounding=roundings,
    proration=prorations,
    prepaid=dec(5000, places=0),
)
def test_subtotal_is_the_sum_of_lines_and_rating_is_deterministic(
    plan: tuple[list[Component], dict[str, Usage], Overrides],
    minor: int,
    rounding: str,
    proration: Fraction,
    prepaid: Decimal,
) -> None:
    components, usages, overrides = plan

    def rate() -> RatingResult:
        return rate_period(
            components=components,
            usages=usages,
            minor_units=minor,
            rounding=rounding,
            proration=proration,
            overrides=overrides,
            prepaid_balance=prepaid,
        )

    first = rate()
    _check_result(first, minor=minor, prepaid=prepaid)
    assert rate() == first
    # the JSON form rates the same
    again = rate_period(
        components=[component_from_dict(c.to_dict()) for c in components],
        usages=usages,
        minor_units=minor,
        rounding=rounding,
        proration=proration,
        overrides=overrides,
        prepaid_balance=prepaid,
    )
    assert again == first


@PLANS
@given(plan=plans(), minor=minor_units, cut=st.integers(1, 29))
def test_segments_keep_the_result_invariants(
    plan: tuple[list[Component], dict[str, Usage], Overrides], minor: int, cut: int
) -> None:
    components, usages, overrides = plan
    result = rate_segments(
        segments=[
            Segment(
                components=tuple(components),
                usages=usages,
                proration=Fraction(cut, 30),
                overrides=overrides,
            ),
            Segment(
                components=tuple(components),
                usages={},
                proration=Fraction(30 - cut, 30),
                overrides=overrides,
            ),
        ],
        minor_units=minor,
        prepaid_balance=D(100),
    )
    _check_result(result, minor=minor, prepaid=D(100))


# ---------------------------------------------------------------- amendments count usage once


@BOUNDED
@given(
    model=st.sampled_from(["per_unit", "package", "graduated"]),
    tiers=tier_lists(places=2),
    price=dec(100, places=2),
    size=st.integers(1, 1000),
    free=st.integers(0, 2000),
    cap=st.none() | dec(10**5, places=2),
    parts=st.lists(st.integers(0, 10**5), min_size=1, max_size=4),
)
def test_splitting_usage_across_unchanged_segments_changes_nothing(
    model: str,
    tiers: tuple[Tier, ...],
    price: Decimal,
    size: int,
    free: int,
    cap: Decimal | None,
    parts: list[int],
) -> None:
    # Integer units and 2-place prices keep every line exact, so per-line
    # rounding cannot differ: any difference would be usage counted twice or
    # an allowance (included units, cap, tier, open package) granted twice.
    component: Component
    if model == "per_unit":
        component = PerUnitPrice(code="c", metric="m", unit_price=price, free_units=D(free))
    elif model == "package":
        component = PackagePrice(
            code="c", metric="m", package_size=D(size), package_price=price, free_units=D(free)
        )
    else:
        component = GraduatedPrice(code="c", metric="m", tiers=tiers, free_units=D(free))
    overrides = Overrides(caps=(Cap(component="c", max_amount=cap),)) if cap is not None else None
    whole = rate_period(
        components=[component],
        usages={"m": Usage(quantity=D(sum(parts)))},
        minor_units=2,
        overrides=overrides,
    )
    split = rate_segments(
        segments=[
            Segment(
                components=(component,),
                usages={"m": Usage(quantity=D(part))},
                proration=Fraction(1, len(parts)),
                overrides=overrides,
            )
            for part in parts
        ],
        minor_units=2,
    )
    assert split.subtotal == whole.subtotal


# ---------------------------------------------------------------- non-negative models


@BOUNDED
@given(tiers=tier_lists(), q=quantities, free=dec(1000), minor=minor_units, rounding=roundings)
def test_volume_is_never_negative(
    tiers: tuple[Tier, ...], q: Decimal, free: Decimal, minor: int, rounding: str
) -> None:
    result = rate_period(
        components=[VolumePrice(code="v", metric="v", tiers=tiers, free_units=free)],
        usages={"v": Usage(quantity=q)},
        minor_units=minor,
        rounding=rounding,
    )
    assert result.subtotal >= 0
    if q <= free:
        assert result.subtotal == 0


@BOUNDED
@given(
    size=dec(10**4, min_value="0.000001"),
    price=prices,
    q=quantities,
    free=dec(1000),
    minor=minor_units,
)
def test_package_is_never_negative_and_bills_whole_packages(
    size: Decimal, price: Decimal, q: Decimal, free: Decimal, minor: int
) -> None:
    (line,) = rate_period(
        components=[
            PackagePrice(
                code="p", metric="p", package_size=size, package_price=price, free_units=free
            )
        ],
        usages={"p": Usage(quantity=q)},
        minor_units=minor,
    ).lines
    assert line.amount >= 0
    billable = max(D(0), q - free)
    assert line.quantity == line.quantity.to_integral_value()  # whole packages
    assert (
        line.quantity - 1
    ) * size < billable <= line.quantity * size or billable == line.quantity == 0


# ---------------------------------------------------------------- percentage bounds


@BOUNDED
@given(
    component=percentage_components(),
    amounts=st.lists(dec(10**5, places=2), min_size=1, max_size=10),
    minor=minor_units,
    rounding=roundings,
)
def test_percentage_fee_per_event_within_min_and_max(
    component: PercentagePrice, amounts: list[Decimal], minor: int, rounding: str
) -> None:
    component = replace(component, free_units=D(0))

    def rate(events: list[Decimal]) -> Decimal:
        return rate_period(
            components=[component],
            usages={"payments": Usage(quantity=D(len(events)), event_amounts=tuple(events))},
            minor_units=minor,
            rounding=rounding,
        ).subtotal

    for amount in amounts:  # one event at a time: its fee is clamped to [min, max]
        fee = rate([amount])
        if component.min_fee is not None:
            assert fee >= round_money(component.min_fee, minor_units=minor, rounding=rounding)
        if component.max_fee is not None:
            assert fee <= round_money(component.max_fee, minor_units=minor, rounding=rounding)
    n = len(amounts)
    total = rate(amounts)
    if component.min_fee is not None:
        assert total >= round_money(component.min_fee * n, minor_units=minor, rounding=rounding)
    if component.max_fee is not None:
        assert total <= round_money(component.max_fee * n, minor_units=minor, rounding=rounding)
