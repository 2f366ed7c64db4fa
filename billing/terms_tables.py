"""Price components and contract overrides as rows a person reads (the contract and price plan
pages): each value keeps its kind (money, unit price, percentage, quantity, text) and the
template formats it through the one money helper (`core.formatting`, its `ledgerline` filters).

Pure: takes the stored JSON form (`components`, `overrides`), no ORM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["money", "unit_price", "fraction", "percent", "quantity", "text"]

TYPE_LABELS = {
    "per_unit": "Per unit",
    "package": "Package",
    "graduated": "Graduated tiers",
    "volume": "Volume tiers",
    "percentage": "Percentage of amount",
    "fixed_fee": "Fixed fee",
    "minimum_commitment": "Minimum commitment",
}

#: Per stored field: its label and kind (in the order the page shows them).
FIELDS: tuple[tuple[str, str, Kind], ...] = (
    ("unit_price", "Unit price", "unit_price"),
    ("package_size", "Package size", "quantity"),
    ("package_price", "Package price", "money"),
    ("rate", "Rate", "fraction"),
    ("fixed_fee", "Fixed fee per event", "unit_price"),
    ("min_fee", "Minimum fee per event", "unit_price"),
    ("max_fee", "Maximum fee per event", "unit_price"),
    ("amount", "Amount per period", "money"),
    ("free_units", "Free units per period", "quantity"),
    ("percent_off", "Discount", "percent"),
    ("amount_off", "Amount off per period", "money"),
    ("max_amount", "Cap per period", "money"),
)


@dataclass(frozen=True)
class Value:
    label: str
    kind: Kind
    value: Decimal | str


@dataclass(frozen=True)
class TierRow:
    above: Decimal
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal


@dataclass
class TermsRow:
    """One component, price override, discount or cap."""

    code: str
    type: str = ""
    metric: str = ""
    description: str = ""
    values: list[Value] = field(default_factory=list)
    tiers: list[TierRow] = field(default_factory=list)


def _dec(raw: Any) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        return None


def _values(item: Mapping[str, Any]) -> list[Value]:
    out: list[Value] = []
    for key, label, kind in FIELDS:
        number = _dec(item.get(key))
        if number is None or (key in ("free_units", "fixed_fee") and number == 0):
            continue
        out.append(Value(label, kind, number))
    if item.get("type") == "fixed_fee" and item.get("prorate") is False:
        out.append(Value("Prorated", "text", "no"))
    metrics = item.get("metrics")
    if metrics:
        out.append(Value("Metrics", "text", ", ".join(str(m) for m in metrics)))
    return out


def _tiers(raw: Any) -> list[TierRow]:
    rows: list[TierRow] = []
    above = Decimal(0)
    for tier in raw or []:
        up_to = _dec(tier.get("up_to"))
        rows.append(
            TierRow(
                above=above,
                up_to=up_to,
                unit_price=_dec(tier.get("unit_price")) or Decimal(0),
                flat_fee=_dec(tier.get("flat_fee")) or Decimal(0),
            )
        )
        if up_to is not None:
            above = up_to
    return rows


def component_rows(components: Sequence[Mapping[str, Any]]) -> list[TermsRow]:
    """A plan version's components, one row each, its tiers as rows of their own."""
    return [
        TermsRow(
            code=str(c.get("code", "")),
            type=TYPE_LABELS.get(str(c.get("type", "")), str(c.get("type", ""))),
            metric=str(c.get("metric", "")),
            description=str(c.get("description", "")),
            values=_values(c),
            tiers=_tiers(c.get("tiers")),
        )
        for c in components
    ]


@dataclass
class OverrideTables:
    prices: list[TermsRow]
    discounts: list[TermsRow]
    caps: list[TermsRow]

    @property
    def empty(self) -> bool:
        return not (self.prices or self.discounts or self.caps)


def override_tables(overrides: Mapping[str, Any] | None) -> OverrideTables:
    """A contract's (or an amendment's) overrides: negotiated prices, discounts and caps."""
    overrides = overrides or {}

    def rows(key: str) -> list[TermsRow]:
        return [
            TermsRow(
                code=str(item.get("component") or "whole invoice"),
                description=str(item.get("description", "")),
                values=_values(item),
                tiers=_tiers(item.get("tiers")),
            )
            for item in overrides.get(key) or []
        ]

    return OverrideTables(prices=rows("prices"), discounts=rows("discounts"), caps=rows("caps"))
