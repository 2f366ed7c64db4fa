"""Rating errors and the value checks shared by the configuration and the engine."""

from __future__ import annotations

from decimal import Decimal

from billing.money import RATE_PLACES

ONE = Decimal(1)


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


def join_path(prefix: str, path: str) -> str:
    """``tiers[0]`` + ``up_to`` -> ``tiers[0].up_to``; ``[1]`` + ``code`` -> ``[1].code``."""
    if not prefix:
        return path
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


def check_dec(
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


def fmt(value: Decimal) -> str:
    """Human form of a 6-place value for descriptions: 1500.000000 -> 1500, 0.002500 -> 0.0025."""
    if value == value.to_integral_value():
        return str(value.quantize(ONE))
    return str(value.normalize())
