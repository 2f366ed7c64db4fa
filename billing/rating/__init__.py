"""Pure rating: usage + price-plan terms -> priced invoice lines (no Django, no ORM, no I/O).

Two parts: ``config`` (price components and contract overrides, msgspec
Structs read from and written to the plan's JSON) and ``engine`` (usage,
segments and the rating itself; its docstring holds the rounding rule and
the order of evaluation). Everything is re-exported here, so callers import
from ``billing.rating``.
"""

from billing.rating.config import (
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
    PriceOverride,
    Tier,
    UsageComponent,
    VolumePrice,
    component_from_dict,
    components_from_config,
    overrides_from_dict,
)
from billing.rating.engine import (
    LineKind,
    RatedLine,
    RatingResult,
    Segment,
    TierCharge,
    Usage,
    rate_period,
    rate_segments,
)
from billing.rating.errors import RatingConfigError, RatingError, RatingInputError

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
