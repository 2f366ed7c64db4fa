"""One contract period -> the lines of its draft invoice (pure: usage comes through a protocol).

Calls billing.rating twice: once in arrears for the period (usage, minimum
commitments, discounts, prepaid drawdown), once for the fixed fees billed in
advance (see billing.terms).  Each usage line keeps the usage summary it was
rated from (`summary_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from billing.periods import Period
from billing.rating import PercentagePrice, RatedLine, Segment, Usage, rate_segments
from billing.terms import (
    ContractTerms,
    Piece,
    PlanCache,
    fee_periods,
    pieces_of,
    split_for_arrears,
    split_for_fees,
    window_utc,
)

ZERO = Decimal(0)
#: Per-event amount property of a percentage component when its meta names none.
DEFAULT_AMOUNT_PROPERTY = "amount"


@dataclass(frozen=True)
class SummaryInfo:
    id: int
    quantity: Decimal
    revision: int
    event_count: int = 0


class UsageSource(Protocol):
    def summary(
        self, customer_id: int, metric: str, start: datetime, end: datetime
    ) -> SummaryInfo | None: ...

    def event_amounts(self, summary_id: int, property_name: str) -> tuple[Decimal, ...]: ...


@dataclass
class DraftLine:
    kind: str
    component: str
    metric: str
    description: str
    quantity: Decimal
    unit_price: Decimal | None
    tiers: list[dict[str, Any]]
    amount: Decimal
    tax_code: str
    service_start: date
    service_end: date
    summary_id: int | None = None
    #: the summary's quantity and event count when rated: finalize re-rates a draft whose summary moved
    rated_quantity: Decimal | None = None
    rated_event_count: int | None = None

    @property
    def key(self) -> tuple[str, str, date]:
        """What identifies "the same charge" when a period is rated again (late usage)."""
        return (self.kind, self.component, self.service_start)


@dataclass
class DraftDocument:
    lines: list[DraftLine] = field(default_factory=list)
    prepaid_applied: Decimal = ZERO
    usage_revision: int = 0

    @property
    def subtotal(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), ZERO)


def usage_windows(
    *, terms: ContractTerms, period: Period, tz: str, plans: PlanCache
) -> list[tuple[datetime, datetime]]:
    """UTC windows whose usage the period's arrears rating reads (one per piece)."""
    return [
        window_utc(period=p.period, tz=tz)
        for p in pieces_of(terms=terms, period=period, plans=plans)
    ]


def _tiers_json(line: RatedLine) -> list[dict[str, Any]]:
    return [
        {
            "from": str(t.from_units),
            "to": None if t.to_units is None else str(t.to_units),
            "units": str(t.units),
            "unit_price": str(t.unit_price),
            "flat_fee": str(t.flat_fee),
            "amount": str(t.amount),
        }
        for t in line.tiers
    ]


def _tax_code(piece: Piece, component: str | None, plans: PlanCache) -> str:
    default = plans.default_tax_codes.get(piece.plan_id, "")
    if component is None:
        return default
    meta = piece.version.component_meta.get(component) or {}
    return str(meta.get("tax_code") or default)


def _segments(
    pieces: Sequence[Piece],
    *,
    arrears: bool,
    terms: ContractTerms,
    tz: str,
    usage: UsageSource | None,
    summaries: dict[tuple[int, str], SummaryInfo],
) -> list[Segment]:
    segments = []
    for index, piece in enumerate(pieces):
        split = split_for_arrears if arrears else split_for_fees
        components, overrides = split(piece.version.components, piece.overrides)
        usages: dict[str, Usage] = {}
        if arrears and usage is not None:
            start, end = window_utc(period=piece.period, tz=tz)
            for c in components:
                metric = getattr(c, "metric", None)
                if metric is None or metric in usages:
                    continue
                info = usage.summary(terms.customer_id, metric, start, end)
                if info is None:
                    continue
                summaries[(index, metric)] = info
                if isinstance(c, PercentagePrice):
                    meta = piece.version.component_meta.get(c.code) or {}
                    prop = str(meta.get("amount_property") or DEFAULT_AMOUNT_PROPERTY)
                    usages[metric] = Usage(
                        quantity=info.quantity, event_amounts=usage.event_amounts(info.id, prop)
                    )
                else:
                    usages[metric] = Usage(quantity=info.quantity)
        segments.append(
            Segment(
                components=components,
                usages=usages,
                proration=piece.proration,
                overrides=overrides,
                service_period=piece.period,
            )
        )
    return segments


def _lines(
    rated: Sequence[RatedLine],
    pieces: Sequence[Piece],
    plans: PlanCache,
    summaries: dict[tuple[int, str], SummaryInfo],
) -> list[DraftLine]:
    out = []
    for ln in rated:
        piece = pieces[ln.segment]
        info = summaries.get((ln.segment, ln.metric)) if ln.kind == "usage" and ln.metric else None
        out.append(
            DraftLine(
                kind=ln.kind,
                component=ln.component or "",
                metric=ln.metric or "",
                description=ln.description[:500],
                quantity=ln.quantity,
                unit_price=ln.unit_price,
                tiers=_tiers_json(ln),
                amount=ln.amount,
                tax_code=_tax_code(piece, ln.component, plans),
                service_start=piece.period.start,
                service_end=piece.period.end,
                summary_id=None if info is None else info.id,
                rated_quantity=None if info is None else info.quantity,
                rated_event_count=None if info is None else info.event_count,
            )
        )
    return out


def draft_period(
    *,
    terms: ContractTerms,
    period: Period,
    tz: str,
    plans: PlanCache,
    usage: UsageSource,
    minor_units: int,
    rounding: str,
    prepaid_balance: Decimal = ZERO,
    include_fees: bool = True,
) -> DraftDocument:
    """Rate one contract period; an inactive period gives a document without lines."""
    doc = DraftDocument()
    remaining = prepaid_balance
    pieces = pieces_of(terms=terms, period=period, plans=plans)
    if pieces:
        summaries: dict[tuple[int, str], SummaryInfo] = {}
        segments = _segments(
            pieces, arrears=True, terms=terms, tz=tz, usage=usage, summaries=summaries
        )
        result = rate_segments(
            segments=segments, minor_units=minor_units, rounding=rounding, prepaid_balance=remaining
        )
        remaining = result.prepaid_balance_remaining
        doc.prepaid_applied += result.credit_applied
        doc.lines.extend(_lines(result.lines, pieces, plans, summaries))
        doc.usage_revision = max((s.revision for s in summaries.values()), default=0)
    if include_fees:
        for fee_period in fee_periods(terms=terms, period=period):
            fee_pieces = pieces_of(terms=terms, period=fee_period, plans=plans)
            if not fee_pieces:
                continue
            segments = _segments(
                fee_pieces, arrears=False, terms=terms, tz=tz, usage=None, summaries={}
            )
            if not any(s.components for s in segments):
                continue
            result = rate_segments(
                segments=segments,
                minor_units=minor_units,
                rounding=rounding,
                prepaid_balance=remaining,
            )
            remaining = result.prepaid_balance_remaining
            doc.prepaid_applied += result.credit_applied
            doc.lines.extend(_lines(result.lines, fee_pieces, plans, {}))
    # zero usage lines are kept (they show the summary and the included units); zero fee lines are not
    doc.lines = [ln for ln in doc.lines if ln.amount != 0 or ln.kind == "usage"]
    return doc
