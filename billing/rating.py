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
from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_CEILING, Context, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Any, ClassVar, Literal, TypeAlias

from billing.money import (
    RATE_PLACES,
    ROUND_HALF_UP,
    check_rounding,
    minor_unit,
    quantize_rate,
    round_money,
)
from billing.periods import Period

__all__ = [
    "Cap",
    "Component",
    "Discount",
    "FixedFee",
    "GraduatedPrice",
    "LineKind",
    "MinimumCommitment",
    "Overrides",
    "PackagePrice",
    "PerUnitPrice",
    "PercentagePrice",
    "PriceOverride",
    "RatedLine",
    "RatingConfigError",
    "RatingError",
    "RatingInputError",
    "RatingResult",
    "Segment",
    "Tier",
    "TierCharge",
    "Usage",
    "UsageComponent",
    "VolumePrice",
    "component_from_dict",
    "components_from_config",
    "overrides_from_dict",
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


# --------------------------------------------------------------------------- errors


class RatingError(ValueError):
    """Base for rating errors; ``code`` is stable (API clients may rely on it)."""

    def __init__(self, code: str, message: str, *, path: str = "") -> None:
        self.code = code
        self.message = message
        self.path = path
        super().__init__(f"[{code}] {path}: {message}" if path else f"[{code}] {message}")


class RatingConfigError(RatingError):
    """A price plan, component or contract override is invalid.

    Codes: ``missing_field``, ``unknown_field``, ``invalid_type``,
    ``float_not_allowed``, ``invalid_decimal``, ``too_many_places``,
    ``negative_value``, ``invalid_value``, ``invalid_tiers``,
    ``unknown_component_type``, ``duplicate_component``, ``unknown_component``,
    ``override_mismatch``.
    """


class RatingInputError(RatingError):
    """Usage or call arguments are invalid.

    Codes: ``invalid_usage``, ``missing_event_amounts``, ``invalid_argument``,
    ``overlapping_segments``.
    """


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def _check_dec(
    value: object,
    path: str,
    *,
    places: int = RATE_PLACES,
    positive: bool = False,
    error: type[RatingError] = RatingConfigError,
) -> Decimal:
    """Validate an already-parsed Decimal field: finite, >= 0 (or > 0), <= places decimals."""
    if isinstance(value, float):
        raise error(
            "float_not_allowed",
            'floats are not accepted; use Decimal or a string like "0.25"',
            path=path,
        )
    if not isinstance(value, Decimal):
        raise error("invalid_type", f"expected a Decimal, got {type(value).__name__}", path=path)
    if not value.is_finite():
        raise error("invalid_decimal", f"must be a finite number, got {value}", path=path)
    if value < 0:
        raise error("negative_value", f"must not be negative, got {value}", path=path)
    if positive and value == 0:
        raise error("invalid_value", "must be greater than zero", path=path)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -places:
        raise error("too_many_places", f"{value} has more than {places} decimal places", path=path)
    return value


def _check_code(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RatingConfigError("invalid_value", "must be a non-empty string", path=path)
    return value


def _fmt(value: Decimal) -> str:
    """Human form of a 6-place value for descriptions: 1500.000000 -> 1500, 0.002500 -> 0.0025."""
    if value == value.to_integral_value():
        return str(value.quantize(ONE))
    return str(value.normalize())


# --------------------------------------------------------------------------- components


@dataclass(frozen=True, kw_only=True)
class Tier:
    """One price tier.  ``up_to`` is the inclusive upper bound (``None`` = infinity)."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.up_to is not None:
            _check_dec(self.up_to, "up_to", positive=True)
        _check_dec(self.unit_price, "unit_price")
        _check_dec(self.flat_fee, "flat_fee")

    def to_dict(self) -> dict[str, Any]:
        return {
            "up_to": None if self.up_to is None else str(self.up_to),
            "unit_price": str(self.unit_price),
            "flat_fee": str(self.flat_fee),
        }


def _check_tiers(tiers: object) -> tuple[Tier, ...]:
    if isinstance(tiers, (str, bytes)) or not isinstance(tiers, Iterable):
        raise RatingConfigError("invalid_tiers", "must be a list of tiers", path="tiers")
    result = tuple(tiers)
    if not result:
        raise RatingConfigError("invalid_tiers", "needs at least one tier", path="tiers")
    previous: Decimal = ZERO
    for index, tier in enumerate(result):
        if not isinstance(tier, Tier):
            raise RatingConfigError(
                "invalid_tiers", "each tier must be a Tier", path=f"tiers[{index}]"
            )
        last = index == len(result) - 1
        if tier.up_to is None and not last:
            raise RatingConfigError(
                "invalid_tiers",
                "only the last tier may have up_to = null (infinity)",
                path=f"tiers[{index}].up_to",
            )
        if tier.up_to is not None and last:
            raise RatingConfigError(
                "invalid_tiers",
                "the last tier must have up_to = null so every quantity has a price",
                path=f"tiers[{index}].up_to",
            )
        if tier.up_to is not None:
            if tier.up_to <= previous:
                raise RatingConfigError(
                    "invalid_tiers",
                    f"up_to {tier.up_to} must be greater than the previous tier's ({previous})",
                    path=f"tiers[{index}].up_to",
                )
            previous = tier.up_to
    return result


@dataclass(frozen=True, kw_only=True)
class _UsageComponentBase:
    """Fields shared by every usage component.

    ``free_units`` are the units included per period: they come off the
    metered quantity before the priced model sees it (for ``percentage``, the
    first ``free_units`` events, in the order given, carry no fee).
    """

    code: str
    metric: str
    free_units: Decimal = ZERO
    description: str = ""

    type: ClassVar[str]

    def __post_init__(self) -> None:
        _check_code(self.code, "code")
        _check_code(self.metric, "metric")
        _check_dec(self.free_units, "free_units")
        if not isinstance(self.description, str):
            raise RatingConfigError("invalid_type", "must be a string", path="description")

    @property
    def label(self) -> str:
        return self.description or self.code

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Decimal):
                out[f.name] = str(value)
            elif isinstance(value, tuple):
                out[f.name] = [item.to_dict() for item in value]
            else:
                out[f.name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class PerUnitPrice(_UsageComponentBase):
    """``billable units * unit_price``."""

    unit_price: Decimal
    type: ClassVar[str] = "per_unit"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_dec(self.unit_price, "unit_price")


@dataclass(frozen=True, kw_only=True)
class PackagePrice(_UsageComponentBase):
    """``ceil(billable units / package_size) * package_price``: a started package is billed whole."""

    package_size: Decimal
    package_price: Decimal
    type: ClassVar[str] = "package"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_dec(self.package_size, "package_size", positive=True)
        _check_dec(self.package_price, "package_price")


@dataclass(frozen=True, kw_only=True)
class GraduatedPrice(_UsageComponentBase):
    """Each tier prices the units inside it; a tier's ``flat_fee`` is charged once any unit falls in it."""

    tiers: tuple[Tier, ...]
    type: ClassVar[str] = "graduated"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tiers", _check_tiers(self.tiers))


@dataclass(frozen=True, kw_only=True)
class VolumePrice(_UsageComponentBase):
    """Every unit at the price of the tier the total reaches, plus that tier's ``flat_fee``.

    Zero billable units charge nothing (no flat fee).
    """

    tiers: tuple[Tier, ...]
    type: ClassVar[str] = "volume"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tiers", _check_tiers(self.tiers))


@dataclass(frozen=True, kw_only=True)
class PercentagePrice(_UsageComponentBase):
    """Per event: ``clamp(amount * rate + fixed_fee, min_fee, max_fee)``; the line sums the events.

    ``rate`` is a fraction (``0.029`` = 2.9 %).  Rated from ``Usage.event_amounts``.
    """

    rate: Decimal
    fixed_fee: Decimal = ZERO
    min_fee: Decimal | None = None
    max_fee: Decimal | None = None
    type: ClassVar[str] = "percentage"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.free_units != self.free_units.to_integral_value():
            raise RatingConfigError(
                "invalid_value",
                "for percentage components free_units counts events: use a whole number",
                path="free_units",
            )
        _check_dec(self.rate, "rate")
        if self.rate > 1:
            raise RatingConfigError(
                "invalid_value", f"rate is a fraction (0.029 = 2.9%), got {self.rate}", path="rate"
            )
        _check_dec(self.fixed_fee, "fixed_fee")
        if self.min_fee is not None:
            _check_dec(self.min_fee, "min_fee")
        if self.max_fee is not None:
            _check_dec(self.max_fee, "max_fee")
        if self.min_fee is not None and self.max_fee is not None and self.min_fee > self.max_fee:
            raise RatingConfigError(
                "invalid_value",
                f"min_fee {self.min_fee} is greater than max_fee {self.max_fee}",
                path="min_fee",
            )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for name in ("min_fee", "max_fee"):
            if out[name] is None:
                del out[name]
        return out


@dataclass(frozen=True, kw_only=True)
class FixedFee:
    """A recurring fee per period, billed in advance; prorated by day unless ``prorate`` is False.

    "In advance" is the caller's choice of period: rate the fee with the
    period it pays for (the upcoming one) and its proration fraction.
    """

    code: str
    amount: Decimal
    prorate: bool = True
    description: str = ""
    type: ClassVar[str] = "fixed_fee"

    def __post_init__(self) -> None:
        _check_code(self.code, "code")
        _check_dec(self.amount, "amount")
        if not isinstance(self.prorate, bool):
            raise RatingConfigError("invalid_type", "must be true or false", path="prorate")
        if not isinstance(self.description, str):
            raise RatingConfigError("invalid_type", "must be a string", path="description")

    @property
    def label(self) -> str:
        return self.description or self.code

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "amount": str(self.amount),
            "prorate": self.prorate,
            "description": self.description,
        }


@dataclass(frozen=True, kw_only=True)
class MinimumCommitment:
    """Minimum usage spend per period; a true-up line bills any shortfall.

    ``metrics`` limits which usage components count (``None`` = all of them).
    Prorated by the segment's ``proration``.
    """

    code: str
    amount: Decimal
    metrics: tuple[str, ...] | None = None
    description: str = ""
    type: ClassVar[str] = "minimum_commitment"

    def __post_init__(self) -> None:
        _check_code(self.code, "code")
        _check_dec(self.amount, "amount")
        if self.metrics is not None:
            if isinstance(self.metrics, str) or not isinstance(self.metrics, Iterable):
                raise RatingConfigError(
                    "invalid_type", "must be a list of metric codes or null", path="metrics"
                )
            metrics = tuple(self.metrics)
            for index, metric in enumerate(metrics):
                _check_code(metric, f"metrics[{index}]")
            if not metrics:
                raise RatingConfigError(
                    "invalid_value", "use null for all metrics, not an empty list", path="metrics"
                )
            object.__setattr__(self, "metrics", metrics)
        if not isinstance(self.description, str):
            raise RatingConfigError("invalid_type", "must be a string", path="description")

    @property
    def label(self) -> str:
        return self.description or self.code

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "amount": str(self.amount),
            "metrics": None if self.metrics is None else list(self.metrics),
            "description": self.description,
        }


UsageComponent: TypeAlias = (
    PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice | PercentagePrice
)
Component: TypeAlias = UsageComponent | FixedFee | MinimumCommitment

_USAGE_TYPES = (PerUnitPrice, PackagePrice, GraduatedPrice, VolumePrice, PercentagePrice)
_COMPONENT_TYPES: dict[str, type[Any]] = {
    cls.type: cls for cls in (*_USAGE_TYPES, FixedFee, MinimumCommitment)
}


# --------------------------------------------------------------------------- overrides


@dataclass(frozen=True, kw_only=True)
class PriceOverride:
    """A contract's negotiated price for one component; set exactly the field that fits its type.

    per_unit -> ``unit_price``; package -> ``package_price``; graduated/volume
    -> ``tiers`` (whole replacement) or ``unit_price`` (every tier's unit
    price, flat fees kept); percentage -> ``rate``; fixed_fee and
    minimum_commitment -> ``amount``.
    """

    component: str
    unit_price: Decimal | None = None
    package_price: Decimal | None = None
    tiers: tuple[Tier, ...] | None = None
    rate: Decimal | None = None
    amount: Decimal | None = None

    _PRICE_FIELDS: ClassVar[tuple[str, ...]] = (
        "unit_price",
        "package_price",
        "tiers",
        "rate",
        "amount",
    )

    def __post_init__(self) -> None:
        _check_code(self.component, "component")
        set_fields = [name for name in self._PRICE_FIELDS if getattr(self, name) is not None]
        if len(set_fields) != 1:
            raise RatingConfigError(
                "invalid_value",
                f"set exactly one of {', '.join(self._PRICE_FIELDS)} (got {', '.join(set_fields) or 'none'})",
            )
        for name in ("unit_price", "package_price", "rate", "amount"):
            value = getattr(self, name)
            if value is not None:
                _check_dec(value, name)
        if self.tiers is not None:
            object.__setattr__(self, "tiers", _check_tiers(self.tiers))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"component": self.component}
        for name in self._PRICE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = [t.to_dict() for t in value] if name == "tiers" else str(value)
        return out


@dataclass(frozen=True, kw_only=True)
class Discount:
    """A contract discount: ``percent_off`` (10 = 10 %) or ``amount_off`` per period.

    ``component`` = a component code, or ``None`` for the whole invoice
    (applied after the minimum true-up, on the running total).  A discount
    never takes its base below zero.  ``amount_off`` is prorated like a fixed fee.
    """

    component: str | None = None
    percent_off: Decimal | None = None
    amount_off: Decimal | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.component is not None:
            _check_code(self.component, "component")
        if (self.percent_off is None) == (self.amount_off is None):
            raise RatingConfigError("invalid_value", "set exactly one of percent_off or amount_off")
        if self.percent_off is not None:
            _check_dec(self.percent_off, "percent_off")
            if self.percent_off > HUNDRED:
                raise RatingConfigError("invalid_value", "must be at most 100", path="percent_off")
        if self.amount_off is not None:
            _check_dec(self.amount_off, "amount_off")
        if not isinstance(self.description, str):
            raise RatingConfigError("invalid_type", "must be a string", path="description")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"component": self.component, "description": self.description}
        if self.percent_off is not None:
            out["percent_off"] = str(self.percent_off)
        if self.amount_off is not None:
            out["amount_off"] = str(self.amount_off)
        return out


@dataclass(frozen=True, kw_only=True)
class Cap:
    """Maximum usage charge for one usage component per period (before its discounts)."""

    component: str
    max_amount: Decimal

    def __post_init__(self) -> None:
        _check_code(self.component, "component")
        _check_dec(self.max_amount, "max_amount")

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "max_amount": str(self.max_amount)}


@dataclass(frozen=True, kw_only=True)
class Overrides:
    """Per-contract terms layered on a price plan."""

    prices: tuple[PriceOverride, ...] = ()
    discounts: tuple[Discount, ...] = ()
    caps: tuple[Cap, ...] = ()

    def __post_init__(self) -> None:
        for name, cls in (("prices", PriceOverride), ("discounts", Discount), ("caps", Cap)):
            items = tuple(getattr(self, name))
            for index, item in enumerate(items):
                if not isinstance(item, cls):
                    raise RatingConfigError(
                        "invalid_type", f"expected {cls.__name__}", path=f"{name}[{index}]"
                    )
            object.__setattr__(self, name, items)
        for name in ("prices", "caps"):
            seen: set[str] = set()
            for index, item in enumerate(getattr(self, name)):
                if item.component in seen:
                    raise RatingConfigError(
                        "duplicate_component",
                        f"component {item.component!r} appears twice",
                        path=f"{name}[{index}].component",
                    )
                seen.add(item.component)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prices": [p.to_dict() for p in self.prices],
            "discounts": [d.to_dict() for d in self.discounts],
            "caps": [c.to_dict() for c in self.caps],
        }


NO_OVERRIDES = Overrides()


# --------------------------------------------------------------------------- parsing


def _parse_decimal(value: object, path: str) -> Decimal:
    if isinstance(value, bool):
        raise RatingConfigError(
            "invalid_type", "expected a number as a string, got a boolean", path=path
        )
    if isinstance(value, float):
        raise RatingConfigError(
            "float_not_allowed",
            f'floats are not accepted for prices; send a string like "{value!r}"',
            path=path,
        )
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise RatingConfigError(
                "invalid_decimal", f"{value!r} is not a decimal number", path=path
            ) from None
    raise RatingConfigError(
        "invalid_type", f"expected a decimal string, got {type(value).__name__}", path=path
    )


def _parse_object(
    d: object, *, path: str, required: Iterable[str], optional: Iterable[str]
) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise RatingConfigError(
            "invalid_type", f"expected an object, got {type(d).__name__}", path=path
        )
    required = tuple(required)
    allowed = {*required, *optional}
    for key in d:
        if key not in allowed:
            raise RatingConfigError(
                "unknown_field",
                f"unknown field {key!r}; allowed: {', '.join(sorted(allowed))}",
                path=path,
            )
    for key in required:
        if key not in d:
            raise RatingConfigError("missing_field", f"{key!r} is required", path=_join(path, key))
    return d


def _parse_tiers(value: object, path: str) -> tuple[Tier, ...]:
    if not isinstance(value, list | tuple):
        raise RatingConfigError("invalid_tiers", "must be a list of tiers", path=path)
    tiers = []
    for index, raw in enumerate(value):
        tier_path = f"{path}[{index}]"
        obj = _parse_object(
            raw, path=tier_path, required=("up_to", "unit_price"), optional=("flat_fee",)
        )
        up_to = (
            None
            if obj["up_to"] is None
            else _parse_decimal(obj["up_to"], _join(tier_path, "up_to"))
        )
        kwargs: dict[str, Any] = {
            "up_to": up_to,
            "unit_price": _parse_decimal(obj["unit_price"], _join(tier_path, "unit_price")),
        }
        if obj.get("flat_fee") is not None:
            kwargs["flat_fee"] = _parse_decimal(obj["flat_fee"], _join(tier_path, "flat_fee"))
        tiers.append(_construct(Tier, kwargs, tier_path))
    return tuple(tiers)


def _construct(cls: Any, kwargs: dict[str, Any], path: str) -> Any:
    """Build a dataclass, prefixing validation errors from ``__post_init__`` with ``path``."""
    try:
        return cls(**kwargs)
    except RatingConfigError as exc:
        raise type(exc)(exc.code, exc.message, path=_join(path, exc.path)) from None


_USAGE_COMMON = ("free_units", "description")
_SPEC: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "per_unit": (("code", "metric", "unit_price"), _USAGE_COMMON),
    "package": (("code", "metric", "package_size", "package_price"), _USAGE_COMMON),
    "graduated": (("code", "metric", "tiers"), _USAGE_COMMON),
    "volume": (("code", "metric", "tiers"), _USAGE_COMMON),
    "percentage": (("code", "metric", "rate"), (*_USAGE_COMMON, "fixed_fee", "min_fee", "max_fee")),
    "fixed_fee": (("code", "amount"), ("prorate", "description")),
    "minimum_commitment": (("code", "amount"), ("metrics", "description")),
}
_DECIMAL_KEYS = {
    "unit_price",
    "package_size",
    "package_price",
    "rate",
    "fixed_fee",
    "min_fee",
    "max_fee",
    "free_units",
    "amount",
}


def component_from_dict(d: Mapping[str, Any], *, path: str = "") -> Component:
    """Parse one price component from its JSON form (decimals as strings; ints allowed, floats refused).

    ``{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.002", "free_units": "1000"}``
    ``{"type": "graduated", "code": "gb", "metric": "storage_gb", "tiers": [{"up_to": "100", "unit_price": "0.10"},
    {"up_to": null, "unit_price": "0.05", "flat_fee": "5"}]}``
    ``{"type": "percentage", "code": "pay", "metric": "payments", "rate": "0.029", "fixed_fee": "0.30",
    "min_fee": "0.50", "max_fee": "25"}``
    ``{"type": "package", ..., "package_size": "1000", "package_price": "5"}``
    ``{"type": "fixed_fee", "code": "platform", "amount": "99.00", "prorate": true}``
    ``{"type": "minimum_commitment", "code": "min", "amount": "500.00", "metrics": ["api_calls"]}``

    Raises ``RatingConfigError`` naming the offending field.
    """
    if not isinstance(d, Mapping):
        raise RatingConfigError(
            "invalid_type", f"expected an object, got {type(d).__name__}", path=path
        )
    kind = d.get("type")
    if kind not in _SPEC:
        raise RatingConfigError(
            "unknown_component_type" if "type" in d else "missing_field",
            f"type must be one of {', '.join(sorted(_SPEC))}, got {kind!r}",
            path=_join(path, "type"),
        )
    required, optional = _SPEC[kind]
    obj = _parse_object(d, path=path, required=("type", *required), optional=optional)
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "type":
            continue
        key_path = _join(path, key)
        if key in _DECIMAL_KEYS:
            if value is None and key in ("min_fee", "max_fee"):
                continue
            kwargs[key] = _parse_decimal(value, key_path)
        elif key == "tiers":
            kwargs[key] = _parse_tiers(value, key_path)
        elif key == "metrics":
            if value is not None and not isinstance(value, list | tuple):
                raise RatingConfigError(
                    "invalid_type", "must be a list of metric codes or null", path=key_path
                )
            kwargs[key] = None if value is None else tuple(value)
        elif key == "description" and value is None:
            continue
        else:
            kwargs[key] = value
    component: Component = _construct(_COMPONENT_TYPES[kind], kwargs, path)
    return component


def components_from_config(items: Sequence[Mapping[str, Any]]) -> tuple[Component, ...]:
    """Parse a price plan's list of components; codes must be unique."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise RatingConfigError("invalid_type", "expected a list of components")
    components = tuple(
        component_from_dict(item, path=f"[{index}]") for index, item in enumerate(items)
    )
    _check_unique_codes(components)
    return components


def overrides_from_dict(d: Mapping[str, Any]) -> Overrides:
    """Parse contract overrides: ``{"prices": [...], "discounts": [...], "caps": [...]}`` (all optional)."""
    obj = _parse_object(d, path="", required=(), optional=("prices", "discounts", "caps"))
    prices: list[PriceOverride] = []
    for index, raw in enumerate(obj.get("prices") or ()):
        item_path = f"prices[{index}]"
        item = _parse_object(
            raw, path=item_path, required=("component",), optional=PriceOverride._PRICE_FIELDS
        )
        kwargs: dict[str, Any] = {"component": item["component"]}
        for key, value in item.items():
            if key == "component" or value is None:
                continue
            key_path = _join(item_path, key)
            kwargs[key] = (
                _parse_tiers(value, key_path) if key == "tiers" else _parse_decimal(value, key_path)
            )
        prices.append(_construct(PriceOverride, kwargs, item_path))
    discounts: list[Discount] = []
    for index, raw in enumerate(obj.get("discounts") or ()):
        item_path = f"discounts[{index}]"
        item = _parse_object(
            raw,
            path=item_path,
            required=(),
            optional=("component", "percent_off", "amount_off", "description"),
        )
        kwargs = {}
        for key, value in item.items():
            if value is None:
                continue
            key_path = _join(item_path, key)
            kwargs[key] = (
                _parse_decimal(value, key_path) if key in ("percent_off", "amount_off") else value
            )
        discounts.append(_construct(Discount, kwargs, item_path))
    caps: list[Cap] = []
    for index, raw in enumerate(obj.get("caps") or ()):
        item_path = f"caps[{index}]"
        item = _parse_object(raw, path=item_path, required=("component", "max_amount"), optional=())
        caps.append(
            _construct(
                Cap,
                {
                    "component": item["component"],
                    "max_amount": _parse_decimal(
                        item["max_amount"], _join(item_path, "max_amount")
                    ),
                },
                item_path,
            )
        )
    overrides: Overrides = _construct(
        Overrides, {"prices": tuple(prices), "discounts": tuple(discounts), "caps": tuple(caps)}, ""
    )
    return overrides


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
        _check_dec(self.quantity, "quantity", error=RatingInputError)
        if self.event_amounts is not None:
            if isinstance(self.event_amounts, (str, bytes)) or not isinstance(
                self.event_amounts, Iterable
            ):
                raise RatingInputError(
                    "invalid_usage", "must be an iterable of Decimals", path="event_amounts"
                )
            amounts = tuple(self.event_amounts)
            for index, amount in enumerate(amounts):
                _check_dec(amount, f"event_amounts[{index}]", error=RatingInputError)
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
        detail=f"{_fmt(billable)} × {_fmt(c.unit_price)}",
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
        detail=f"{_fmt(packages)} package(s) of {_fmt(c.package_size)} × {_fmt(c.package_price)}",
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
        detail=f"{_fmt(billable)} units, graduated",
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
            fee = f" + {_fmt(tier.flat_fee)}" if tier.flat_fee else ""
            return _Charge(
                raw=amount,
                quantity=billable,
                unit_price=tier.unit_price,
                tiers=(breakdown,),
                detail=f"{_fmt(billable)} × {_fmt(tier.unit_price)}{fee} (volume tier up to {_fmt(tier.up_to) if tier.up_to is not None else '∞'})",
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
            detail=f"{len(charged)} event(s) totalling {_fmt(quantize_rate(base))} at {_fmt(c.rate * HUNDRED)}%"
            + (f" + {_fmt(c.fixed_fee)} each" if c.fixed_fee else ""),
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
        detail += f" ({_fmt(used_free)} included)"
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
        return min(value, base), f"{_fmt(d.percent_off)}% off {base}", None
    assert d.amount_off is not None
    value = round_money(
        _prorate(d.amount_off, fraction), minor_units=minor_units, rounding=rounding
    )
    shown = None if fraction == 1 else _show_fraction(fraction)
    return min(value, base), f"{d.amount_off} off", shown


def _check_unique_codes(components: Sequence[Component]) -> None:
    seen: set[str] = set()
    for index, c in enumerate(components):
        if not isinstance(c, tuple(_COMPONENT_TYPES.values())):
            raise RatingConfigError(
                "invalid_type", f"not a price component: {type(c).__name__}", path=f"[{index}]"
            )
        if c.code in seen:
            raise RatingConfigError(
                "duplicate_component",
                f"component code {c.code!r} appears twice",
                path=f"[{index}].code",
            )
        seen.add(c.code)


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


def _rate_segment(
    seg: Segment,
    *,
    index: int,
    state: _PeriodState,
    minor_units: int,
    rounding: str,
) -> list[RatedLine]:
    _check_unique_codes(seg.components)
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
        if not isinstance(by_code[cap.component], _USAGE_TYPES):
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
    components = [by_code[c.code] for c in seg.components]
    caps = {cap.component: cap.max_amount for cap in overrides.caps}
    for metric, usage in seg.usages.items():
        if not isinstance(usage, Usage):
            raise RatingInputError(
                "invalid_usage", f"expected Usage, got {type(usage).__name__}", path=str(metric)
            )

    common: dict[str, Any] = {"segment": index, "service_period": seg.service_period}
    lines: list[RatedLine] = []

    # 2. usage
    for c in components:
        if isinstance(c, _USAGE_TYPES):
            lines.append(
                _rate_usage(
                    c,
                    seg.usages.get(c.metric, Usage()),
                    cap=caps.get(c.code),
                    state=state,
                    minor_units=minor_units,
                    rounding=rounding,
                    segment=index,
                    service_period=seg.service_period,
                )
            )

    # 3. recurring fixed fees
    for c in components:
        if isinstance(c, FixedFee):
            applied = fraction if c.prorate else Fraction(1)
            amount = round_money(
                _prorate(c.amount, applied), minor_units=minor_units, rounding=rounding
            )
            shown = None if applied == 1 else _show_fraction(applied)
            suffix = (
                "" if shown is None else f" (prorated {applied.numerator}/{applied.denominator})"
            )
            lines.append(
                RatedLine(
                    kind="fixed_fee",
                    component=c.code,
                    metric=None,
                    description=f"{c.label}{suffix}",
                    quantity=quantize_rate(ONE),
                    unit_price=quantize_rate(c.amount),
                    amount=amount,
                    proration=shown,
                    **common,
                )
            )

    # 4. component discounts, on the rounded lines of that component
    for d in overrides.discounts:
        if d.component is None:
            continue
        # net of earlier discounts on the same component, so stacked discounts never go below zero
        base = sum((ln.amount for ln in lines if ln.component == d.component), ZERO)
        value, what, shown = _discount_value(
            d, base, fraction, minor_units=minor_units, rounding=rounding
        )
        if value:
            lines.append(
                RatedLine(
                    kind="discount",
                    component=d.component,
                    metric=getattr(by_code[d.component], "metric", None),
                    description=d.description
                    or f"Discount on {by_code[d.component].label}: {what}",
                    quantity=quantize_rate(ONE),
                    unit_price=None,
                    amount=-value,
                    proration=shown,
                    **common,
                )
            )

    # 5. minimum commitment true-up
    for c in components:
        if isinstance(c, MinimumCommitment):
            covered = {
                u.code
                for u in components
                if isinstance(u, _USAGE_TYPES) and (c.metrics is None or u.metric in c.metrics)
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
            if spent < required:
                amount = round_money(required - spent, minor_units=minor_units, rounding=rounding)
                if amount:
                    shown = None if fraction == 1 else _show_fraction(fraction)
                    lines.append(
                        RatedLine(
                            kind="minimum_true_up",
                            component=c.code,
                            metric=None,
                            description=f"{c.label}: minimum {c.amount}"
                            + (
                                ""
                                if shown is None
                                else f" prorated {fraction.numerator}/{fraction.denominator}"
                            )
                            + f", usage {spent}",
                            quantity=quantize_rate(ONE),
                            unit_price=None,
                            amount=amount,
                            proration=shown,
                            **common,
                        )
                    )

    # 6. invoice discounts, in order, on the running total of this segment
    for d in overrides.discounts:
        if d.component is not None:
            continue
        running = sum((ln.amount for ln in lines), ZERO)
        value, what, shown = _discount_value(
            d, running, fraction, minor_units=minor_units, rounding=rounding
        )
        if value:
            lines.append(
                RatedLine(
                    kind="discount",
                    component=None,
                    metric=None,
                    description=d.description or f"Invoice discount: {what}",
                    quantity=quantize_rate(ONE),
                    unit_price=None,
                    amount=-value,
                    proration=shown,
                    **common,
                )
            )
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
    _check_dec(prepaid_balance, "prepaid_balance", places=minor_units, error=RatingInputError)

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
                raise type(exc)(exc.code, exc.message, path=_join(prefix, exc.path)) from None

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
