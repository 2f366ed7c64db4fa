"""Tax behind one interface: the billing services ask a `TaxEngine` for tax lines.

The default `TableTaxEngine` reads `TaxRate` rows: the most specific rate of
the legal entity for (customer jurisdiction, product tax code) valid on the
invoice's tax date wins (exact jurisdiction beats blank, exact tax code beats
blank).  Tax is computed per (rate, tax code) group on the sum of that
group's rounded line amounts and rounded once per tax line with the invoice's
rounding mode.  Tax-exempt customers get no tax lines.

An external engine (Avalara, Vertex, ...) implements `TaxEngine.compute` and
is named in settings.LEDGERLINE["TAX_ENGINE"] (a dotted path).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from billing.money import round_money

ZERO = Decimal(0)


@dataclass(frozen=True)
class TaxableLine:
    amount: Decimal  # rounded line amount (negative on credit memos)
    tax_code: str


@dataclass(frozen=True)
class TaxContext:
    legal_entity_id: int
    jurisdiction: str
    tax_exempt: bool
    tax_date: date
    minor_units: int
    rounding: str


@dataclass(frozen=True)
class TaxLineResult:
    name: str
    tax_code: str
    jurisdiction: str
    rate: Decimal
    taxable_amount: Decimal
    amount: Decimal


class TaxEngine(Protocol):
    def compute(self, *, context: TaxContext, lines: Sequence[TaxableLine]) -> list[TaxLineResult]:
        """Tax lines for one document; must be deterministic for the same input."""


@dataclass(frozen=True)
class _Rate:
    jurisdiction: str
    tax_code: str
    name: str
    rate: Decimal
    valid_from: date
    valid_to: date | None


class TableTaxEngine:
    """Rates from the TaxRate table, loaded once per legal entity and cached on the instance.

    Make one engine per billing run (or request): the cache is not invalidated.
    """

    def __init__(self) -> None:
        self._rates: dict[int, list[_Rate]] = {}

    def _rates_of(self, legal_entity_id: int) -> list[_Rate]:
        if legal_entity_id not in self._rates:
            from billing.models import TaxRate

            self._rates[legal_entity_id] = [
                _Rate(r.jurisdiction, r.tax_code, r.name, r.rate, r.valid_from, r.valid_to)
                for r in TaxRate.objects.filter(legal_entity_id=legal_entity_id)
            ]
        return self._rates[legal_entity_id]

    def rate_for(self, *, context: TaxContext, tax_code: str) -> _Rate | None:
        best: tuple[int, date] | None = None
        found: _Rate | None = None
        for r in self._rates_of(context.legal_entity_id):
            if r.jurisdiction not in ("", context.jurisdiction) or r.tax_code not in ("", tax_code):
                continue
            if r.valid_from > context.tax_date or (
                r.valid_to is not None and r.valid_to <= context.tax_date
            ):
                continue
            rank = (2 * (r.jurisdiction != "") + (r.tax_code != ""), r.valid_from)
            if best is None or rank > best:
                best, found = rank, r
        return found

    def compute(self, *, context: TaxContext, lines: Sequence[TaxableLine]) -> list[TaxLineResult]:
        if context.tax_exempt:
            return []
        groups: dict[tuple[str, str, Decimal, str], Decimal] = defaultdict(lambda: ZERO)
        for line in lines:
            found = self.rate_for(context=context, tax_code=line.tax_code)
            if found is None or found.rate == 0:
                continue
            groups[(found.name, line.tax_code, found.rate, found.jurisdiction)] += line.amount
        results = []
        for (name, code, rate, jurisdiction), taxable in sorted(groups.items()):
            if taxable == 0:
                continue
            results.append(
                TaxLineResult(
                    name=name,
                    tax_code=code,
                    jurisdiction=jurisdiction or context.jurisdiction,
                    rate=rate,
                    taxable_amount=taxable,
                    amount=round_money(
                        taxable * rate, minor_units=context.minor_units, rounding=context.rounding
                    ),
                )
            )
        return results


def tax_engine() -> TaxEngine:
    """A fresh engine of the configured class (default: TableTaxEngine)."""
    path = settings.LEDGERLINE.get("TAX_ENGINE", "billing.tax.TableTaxEngine")
    engine: TaxEngine = import_string(path)()
    return engine
