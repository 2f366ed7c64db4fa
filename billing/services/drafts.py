"""Writing draft documents: the usage summaries a run reads, tax, bulk inserts of invoices and lines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Case, F, Value, When

from billing.drafting import DraftDocument, DraftLine, SummaryInfo
from billing.models import (
    BillingRun,
    Contract,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
)
from billing.periods import Period
from billing.services._shared import BULK_INSERT_BATCH_SIZE, ZERO
from billing.tax import TaxableLine, TaxContext, TaxEngine, TaxLineResult
from core import pgcopy
from core.actors import Actor
from core.models import Customer
from exceptions.models import ExceptionCase
from exceptions.services import case_open_or_update
from metering.for_billing import (
    MetricDefinition,
    UsageSummary,
    summary_event_values,
    usage_summarize_window,
)


class SummaryIndex:
    """Usage summaries a run fetched, looked up by (customer, metric code, window)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, str, datetime, datetime], UsageSummary] = {}
        self._by_id: dict[int, UsageSummary] = {}
        self._codes: dict[int, str] = {}

    def add(self, summaries: Iterable[UsageSummary]) -> None:
        summaries = list(summaries)
        missing = {s.metric_id for s in summaries} - set(self._codes)
        if missing:
            self._codes.update(
                MetricDefinition.objects.filter(pk__in=missing).values_list("pk", "code")
            )
        for s in summaries:
            self._by_key[
                (s.customer_id, self._codes[s.metric_id], s.period_start, s.period_end)
            ] = s
            self._by_id[s.pk] = s

    def summary(
        self, customer_id: int, metric: str, start: datetime, end: datetime
    ) -> SummaryInfo | None:
        s = self._by_key.get((customer_id, metric, start, end))
        return (
            None
            if s is None
            else SummaryInfo(
                id=s.pk, quantity=s.quantity, revision=s.revision, event_count=s.event_count
            )
        )

    def event_amounts(self, summary_id: int, property_name: str) -> tuple[Decimal, ...]:
        return tuple(
            summary_event_values(summary=self._by_id[summary_id], property_name=property_name)
        )

    def get(self, summary_id: int) -> UsageSummary | None:
        return self._by_id.get(summary_id)


def summarize_windows(
    needs: Mapping[tuple[datetime, datetime], set[int]], index: SummaryIndex, actor: Actor
) -> None:
    """One usage_summarize_window call per window, for the customers that need it."""
    for (start, end), customers in sorted(needs.items()):
        index.add(
            usage_summarize_window(
                period_start=start, period_end=end, customer_ids=sorted(customers), actor=actor
            )
        )


def tax_context_for(
    customer: Customer, *, legal_entity_id: int, tax_date: date, minor_units: int, rounding: str
) -> TaxContext:
    return TaxContext(
        legal_entity_id=legal_entity_id,
        jurisdiction=customer.tax_jurisdiction or customer.country,
        tax_exempt=customer.tax_exempt,
        tax_date=tax_date,
        minor_units=minor_units,
        rounding=rounding,
    )


def compute_taxes(
    engine: TaxEngine, context: TaxContext, lines: Sequence[DraftLine]
) -> list[TaxLineResult]:
    return engine.compute(
        context=context,
        lines=[
            TaxableLine(amount=ln.amount, tax_code=ln.tax_code)
            for ln in lines
            if ln.kind != "credit_drawdown"
        ],
    )


@dataclass
class NewDocument:
    invoice: Invoice
    lines: list[DraftLine]
    taxes: list[TaxLineResult]
    credits_lines: list[int | None] | None = None


def draft_invoice(
    *,
    kind: str,
    contract: Contract,
    period: Period,
    draft: DraftDocument,
    taxes: list[TaxLineResult],
    rounding: str,
    run: BillingRun | None,
    credits: Invoice | None = None,
    correction_no: int = 0,
    reason: str = "",
) -> Invoice:
    subtotal = draft.subtotal
    tax_total = sum((t.amount for t in taxes), ZERO)
    return Invoice(
        kind=kind,
        legal_entity_id=contract.legal_entity_id,
        customer_id=contract.customer_id,
        contract=contract,
        currency_id=contract.currency_id,
        billing_run=run,
        period_start=period.start,
        period_end=period.end,
        credits=credits,
        correction_no=correction_no,
        usage_revision=draft.usage_revision,
        reason=reason,
        rounding=rounding,
        subtotal=subtotal,
        tax_total=tax_total,
        total=subtotal + tax_total,
        prepaid_applied=draft.prepaid_applied,
    )


def _insert_rows(model: Any, fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert plain rows: COPY on PostgreSQL (no per-object ORM work), bulk_create elsewhere."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            [model(**dict(zip(fields, row, strict=True))) for row in rows],
            batch_size=BULK_INSERT_BATCH_SIZE,
        )
        return
    with connection.cursor() as cur:
        pgcopy.copy_rows(
            cur,
            table=model._meta.db_table,
            columns=[model._meta.get_field(f).column for f in fields],
            rows=rows,
        )


_LINE_FIELDS = (
    "invoice_id",
    "position",
    "kind",
    "component",
    "metric",
    "description",
    "quantity",
    "unit_price",
    "tiers",
    "amount",
    "tax_code",
    "service_start",
    "service_end",
    "usage_summary_id",
    "credits_line_id",
    "credited_amount",
    "rated_quantity",
    "rated_event_count",
)
_TAX_FIELDS = ("invoice_id", "name", "tax_code", "jurisdiction", "rate", "taxable_amount", "amount")


def write_documents(docs: Sequence[NewDocument]) -> list[Invoice]:
    """Insert documents (bulk insert returning ids), then their lines and tax lines (COPY on PostgreSQL)."""
    invoices = Invoice.objects.bulk_create(
        [d.invoice for d in docs], batch_size=BULK_INSERT_BATCH_SIZE
    )
    write_lines(docs, invoices)
    return invoices


def write_lines(docs: Sequence[NewDocument], invoices: Sequence[Invoice]) -> None:
    lines: list[tuple[Any, ...]] = []
    taxes: list[tuple[Any, ...]] = []
    for doc, inv in zip(docs, invoices, strict=True):
        for position, ln in enumerate(doc.lines, start=1):
            lines.append(
                (
                    inv.pk,
                    position,
                    ln.kind,
                    ln.component,
                    ln.metric,
                    ln.description,
                    ln.quantity,
                    ln.unit_price,
                    ln.tiers,
                    ln.amount,
                    ln.tax_code,
                    ln.service_start,
                    ln.service_end,
                    ln.summary_id,
                    doc.credits_lines[position - 1] if doc.credits_lines else None,
                    ZERO,
                    ln.rated_quantity,
                    ln.rated_event_count,
                )
            )
        for t in doc.taxes:
            taxes.append(
                (inv.pk, t.name, t.tax_code, t.jurisdiction, t.rate, t.taxable_amount, t.amount)
            )
    _insert_rows(InvoiceLine, _LINE_FIELDS, lines)
    _insert_rows(InvoiceTaxLine, _TAX_FIELDS, taxes)


def open_rating_failed_case(
    *, run: BillingRun, contract: Contract, period: Period, exc: Exception, actor: Actor
) -> ExceptionCase:
    code = getattr(exc, "code", "error")
    case, _ = case_open_or_update(
        kind="billing_rating_failed",
        fingerprint=f"billing:rating:{contract.pk}:{period.start}",
        title=f"Contract {contract.code} could not be rated for {period}",
        actor=actor,
        error_code=code,
        error_message=str(getattr(exc, "message", exc))[:2000],
        source=contract,
        details={
            "run_id": run.pk,
            "period_start": str(period.start),
            "period_end": str(period.end),
        },
        legal_entity_id=contract.legal_entity_id,
        customer_id=contract.customer_id,
        currency_id=contract.currency_id,
    )
    return case


ProgressFn = Callable[[int, int], None]


def apply_prepaid(docs: Sequence[NewDocument]) -> None:
    """Drafts that drew on a prepaid balance lower it now: one UPDATE for the whole batch."""
    used: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for d in docs:
        if d.invoice.prepaid_applied:
            used[d.invoice.contract_id] += d.invoice.prepaid_applied
    if used:
        drawn = Case(
            *[When(pk=pk, then=Value(amount)) for pk, amount in used.items()],
            output_field=Contract._meta.get_field("prepaid_balance"),
        )
        Contract.objects.filter(pk__in=list(used)).update(
            prepaid_balance=F("prepaid_balance") - drawn
        )
