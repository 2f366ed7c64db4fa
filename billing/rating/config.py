"""Price-plan configuration: price components and contract overrides as msgspec Structs.

A plan version stores its components as JSON (decimals as strings, ints
allowed, floats refused); ``components_from_config`` turns that list into the
tagged union ``Component`` (tag field ``type``) with ``msgspec.convert``, and
``Struct.to_dict`` gives the JSON form back. Structure (required and unknown
fields, types, the tag) is msgspec's to check; what the types cannot say
(places, signs, tier order, exactly one price in an override) is each
Struct's ``__post_init__``, which also runs when a Struct is built directly.
Either way a bad configuration raises ``RatingConfigError`` naming the field
(``tiers[1].up_to``, ``[2].unit_price``) with one of the stable codes listed
on that class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeAlias

import msgspec
import msgspec.inspect
from msgspec.structs import force_setattr

from billing.rating.errors import RatingConfigError, check_dec, join_path

__all__ = [
    "COMPONENT_TYPES",
    "Cap",
    "Component",
    "Discount",
    "FixedFee",
    "GraduatedPrice",
    "MinimumCommitment",
    "NO_OVERRIDES",
    "Overrides",
    "PackagePrice",
    "PerUnitPrice",
    "PercentagePrice",
    "PriceOverride",
    "Tier",
    "USAGE_TYPES",
    "UsageComponent",
    "VolumePrice",
    "check_unique_codes",
    "component_from_dict",
    "components_from_config",
    "overrides_from_dict",
]

ZERO = Decimal(0)
HUNDRED = Decimal(100)


def _check_code(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RatingConfigError("invalid_value", "must be a non-empty string", path=path)
    return value


def _check_text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RatingConfigError("invalid_type", "must be a string", path=path)
    return value


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Frozen, keyword-only, no unknown fields; ``to_dict`` is the stored JSON form."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return out


# --------------------------------------------------------------------------- components


class Tier(_Config, frozen=True, kw_only=True):
    """One price tier.  ``up_to`` is the inclusive upper bound (``None`` = infinity)."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.up_to is not None:
            check_dec(self.up_to, "up_to", positive=True)
        check_dec(self.unit_price, "unit_price")
        check_dec(self.flat_fee, "flat_fee")


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


class _UsageComponentBase(_Config, frozen=True, kw_only=True, tag_field="type"):
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
        check_dec(self.free_units, "free_units")
        _check_text(self.description, "description")

    @property
    def label(self) -> str:
        return self.description or self.code


class PerUnitPrice(_UsageComponentBase, frozen=True, kw_only=True, tag="per_unit"):
    """``billable units * unit_price``."""

    unit_price: Decimal
    type: ClassVar[str] = "per_unit"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_dec(self.unit_price, "unit_price")


class PackagePrice(_UsageComponentBase, frozen=True, kw_only=True, tag="package"):
    """``ceil(billable units / package_size) * package_price``: a started package is billed whole."""

    package_size: Decimal
    package_price: Decimal
    type: ClassVar[str] = "package"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_dec(self.package_size, "package_size", positive=True)
        check_dec(self.package_price, "package_price")


class GraduatedPrice(_UsageComponentBase, frozen=True, kw_only=True, tag="graduated"):
    """Each tier prices the units inside it; a tier's ``flat_fee`` is charged once any unit falls in it."""

    tiers: tuple[Tier, ...]
    type: ClassVar[str] = "graduated"

    def __post_init__(self) -> None:
        super().__post_init__()
        force_setattr(self, "tiers", _check_tiers(self.tiers))


class VolumePrice(_UsageComponentBase, frozen=True, kw_only=True, tag="volume"):
    """Every unit at the price of the tier the total reaches, plus that tier's ``flat_fee``.

    Zero billable units charge nothing (no flat fee).
    """

    tiers: tuple[Tier, ...]
    type: ClassVar[str] = "volume"

    def __post_init__(self) -> None:
        super().__post_init__()
        force_setattr(self, "tiers", _check_tiers(self.tiers))


class PercentagePrice(_UsageComponentBase, frozen=True, kw_only=True, tag="percentage"):
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
        check_dec(self.rate, "rate")
        if self.rate > 1:
            raise RatingConfigError(
                "invalid_value", f"rate is a fraction (0.029 = 2.9%), got {self.rate}", path="rate"
            )
        check_dec(self.fixed_fee, "fixed_fee")
        if self.min_fee is not None:
            check_dec(self.min_fee, "min_fee")
        if self.max_fee is not None:
            check_dec(self.max_fee, "max_fee")
        if self.min_fee is not None and self.max_fee is not None and self.min_fee > self.max_fee:
            raise RatingConfigError(
                "invalid_value",
                f"min_fee {self.min_fee} is greater than max_fee {self.max_fee}",
                path="min_fee",
            )


class FixedFee(_Config, frozen=True, kw_only=True, tag_field="type", tag="fixed_fee"):
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
        check_dec(self.amount, "amount")
        if not isinstance(self.prorate, bool):
            raise RatingConfigError("invalid_type", "must be true or false", path="prorate")
        _check_text(self.description, "description")

    @property
    def label(self) -> str:
        return self.description or self.code


class MinimumCommitment(
    _Config, frozen=True, kw_only=True, tag_field="type", tag="minimum_commitment"
):
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
        check_dec(self.amount, "amount")
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
            force_setattr(self, "metrics", metrics)
        _check_text(self.description, "description")

    @property
    def label(self) -> str:
        return self.description or self.code


UsageComponent: TypeAlias = (
    PerUnitPrice | PackagePrice | GraduatedPrice | VolumePrice | PercentagePrice
)
Component: TypeAlias = UsageComponent | FixedFee | MinimumCommitment

USAGE_TYPES = (PerUnitPrice, PackagePrice, GraduatedPrice, VolumePrice, PercentagePrice)
COMPONENT_TYPES: dict[str, type[Any]] = {
    cls.type: cls for cls in (*USAGE_TYPES, FixedFee, MinimumCommitment)
}


# --------------------------------------------------------------------------- overrides


_PRICE_FIELDS = ("unit_price", "package_price", "tiers", "rate", "amount")


class PriceOverride(_Config, frozen=True, kw_only=True, omit_defaults=True):
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

    def __post_init__(self) -> None:
        _check_code(self.component, "component")
        set_fields = [name for name in _PRICE_FIELDS if getattr(self, name) is not None]
        if len(set_fields) != 1:
            raise RatingConfigError(
                "invalid_value",
                f"set exactly one of {', '.join(_PRICE_FIELDS)} (got {', '.join(set_fields) or 'none'})",
            )
        for name in ("unit_price", "package_price", "rate", "amount"):
            value = getattr(self, name)
            if value is not None:
                check_dec(value, name)
        if self.tiers is not None:
            force_setattr(self, "tiers", _check_tiers(self.tiers))


class Discount(_Config, frozen=True, kw_only=True, omit_defaults=True):
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
            check_dec(self.percent_off, "percent_off")
            if self.percent_off > HUNDRED:
                raise RatingConfigError("invalid_value", "must be at most 100", path="percent_off")
        if self.amount_off is not None:
            check_dec(self.amount_off, "amount_off")
        _check_text(self.description, "description")


class Cap(_Config, frozen=True, kw_only=True):
    """Maximum usage charge for one usage component per period (before its discounts)."""

    component: str
    max_amount: Decimal

    def __post_init__(self) -> None:
        _check_code(self.component, "component")
        check_dec(self.max_amount, "max_amount")


class Overrides(_Config, frozen=True, kw_only=True):
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
            force_setattr(self, name, items)
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


NO_OVERRIDES = Overrides()


def check_unique_codes(components: Sequence[Component]) -> None:
    """Every item is a price component and no two share a code."""
    seen: set[str] = set()
    for index, c in enumerate(components):
        if not isinstance(c, tuple(COMPONENT_TYPES.values())):
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


# --------------------------------------------------------------------------- from JSON


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
    component: Component = _convert(d, Component, path=path)
    return component


def components_from_config(items: Sequence[Mapping[str, Any]]) -> tuple[Component, ...]:
    """Parse a price plan's list of components; codes must be unique."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise RatingConfigError("invalid_type", "expected a list of components")
    components = tuple(
        component_from_dict(item, path=f"[{index}]") for index, item in enumerate(items)
    )
    check_unique_codes(components)
    return components


def overrides_from_dict(d: Mapping[str, Any]) -> Overrides:
    """Parse contract overrides: ``{"prices": [...], "discounts": [...], "caps": [...]}`` (all optional)."""
    overrides: Overrides = _convert(d, Overrides, path="")
    return overrides


# The JSON form has always accepted null for these optional fields, meaning "not given".
_NULL_MEANS_DEFAULT = frozenset({"description", "flat_fee", "prices", "discounts", "caps"})


def _prepare(value: Any, path: str) -> Any:
    """Refuse floats anywhere (money is never a float) and drop the nulls that mean "not given"."""
    if isinstance(value, float):
        raise RatingConfigError(
            "float_not_allowed",
            f'floats are not accepted for prices; send a string like "{value!r}"',
            path=path,
        )
    if isinstance(value, Mapping):
        return {
            key: _prepare(item, join_path(path, str(key)))
            for key, item in value.items()
            if not (item is None and key in _NULL_MEANS_DEFAULT)
        }
    if isinstance(value, list | tuple):
        return [_prepare(item, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def _convert(raw: Any, target: Any, *, path: str) -> Any:
    prepared = _prepare(raw, path)
    try:
        return msgspec.convert(prepared, target, strict=True)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, prepared, target, prefix=path) from None


_LOCATION = re.compile(r"\.([A-Za-z_][A-Za-z_0-9]*)|\[(\d+)\]")
_EXPECTED = {
    "object": "an object",
    "array": "a list",
    "str": "a string",
    "bool": "true or false",
    "decimal": "a decimal string",
    "null": "null",
    "int": "an integer",
}
_GOT = {**_EXPECTED, "bool": "a boolean", "decimal": "a number"}


def _config_error(
    exc: msgspec.ValidationError, raw: Any, target: Any, *, prefix: str
) -> RatingConfigError:
    """msgspec's refusal as a ``RatingConfigError`` with our codes and paths.

    msgspec says ``<what> - at `$.tiers[0]```; a ``RatingConfigError`` raised
    by a Struct's ``__post_init__`` arrives as the cause, its path relative
    to that Struct.
    """
    text = str(exc)
    what, _, where = text.partition(" - at `")
    location = where.rstrip("`").removeprefix("$")
    tokens: list[str | int] = [
        key if key else int(index) for key, index in _LOCATION.findall(location)
    ]
    at = join_path(prefix, location.removeprefix("."))
    cause = exc.__cause__
    if isinstance(cause, RatingConfigError):
        return RatingConfigError(cause.code, cause.message, path=join_path(at, cause.path))
    if match := re.fullmatch(r"Object missing required field `(.+)`", what):
        name = match.group(1)
        if name == "type":
            return _unknown_type(None, code="missing_field", path=join_path(at, "type"))
        return RatingConfigError("missing_field", f"{name!r} is required", path=join_path(at, name))
    if match := re.fullmatch(r"Object contains unknown field `(.+)`", what):
        allowed = _allowed_fields(target, raw, tokens)
        listed = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return RatingConfigError(
            "unknown_field", f"unknown field {match.group(1)!r}{listed}", path=at
        )
    if tokens and tokens[-1] == "type":  # only a component has a field named type: its tag
        return _unknown_type(_value_at(raw, tokens), code="unknown_component_type", path=at)
    if what == "Invalid decimal string":
        value = _value_at(raw, tokens)
        return RatingConfigError("invalid_decimal", f"{value!r} is not a decimal number", path=at)
    if match := re.fullmatch(r"Expected `(.+)`, got `(.+)`", what):
        expected = " or ".join(_EXPECTED.get(t, t) for t in match.group(1).split(" | "))
        got = _GOT.get(match.group(2), match.group(2))
        if tokens and tokens[-1] == "tiers":
            return RatingConfigError("invalid_tiers", "must be a list of tiers", path=at)
        return RatingConfigError("invalid_type", f"expected {expected}, got {got}", path=at)
    return RatingConfigError("invalid_value", what, path=at)


def _unknown_type(value: object, *, code: str, path: str) -> RatingConfigError:
    return RatingConfigError(
        code, f"type must be one of {', '.join(sorted(COMPONENT_TYPES))}, got {value!r}", path=path
    )


def _value_at(raw: Any, tokens: Sequence[str | int]) -> Any:
    for token in tokens:
        raw = raw[token]
    return raw


def _allowed_fields(target: Any, raw: Any, tokens: Sequence[str | int]) -> list[str] | None:
    """The field names of the Struct the input at ``tokens`` is decoded into (None: not a Struct)."""
    info: Any = msgspec.inspect.type_info(target)
    for token in [*tokens, None]:
        if isinstance(info, msgspec.inspect.UnionType):
            tag = raw.get("type") if isinstance(raw, Mapping) else None
            choices = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            tagged = [t for t in choices if getattr(t, "tag", None) == tag]
            info = (tagged or choices)[0] if tagged or len(choices) == 1 else None
        if token is None or info is None:
            break
        if isinstance(token, int):
            info = getattr(info, "item_type", None)
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.name == token), None)
        else:
            info = None
        if isinstance(raw, Mapping):
            raw = raw.get(token)
        elif isinstance(raw, list) and isinstance(token, int):
            raw = raw[token]
        else:
            raw = None
    if not isinstance(info, msgspec.inspect.StructType):
        return None
    names = [f.name for f in info.fields]
    if info.tag_field:
        names.append(info.tag_field)
    return sorted(names)
