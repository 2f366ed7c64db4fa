"""Reads of billing: invoice lists and details, lineage, runs, finance events."""

from __future__ import annotations

from datetime import date

from django.db.models import Count, Prefetch, Q, QuerySet

from billing.models import (
    BillingRun,
    Contract,
    ContractAmendment,
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
    PricePlan,
    PricePlanVersion,
)
from billing.periods import parse_period
from metering.selectors import summaries_for_event, summary_events


def invoices(
    *,
    customer: str = "",
    legal_entity: str = "",
    status: str = "",
    kind: str = "",
    period: str = "",
    issued_from: date | None = None,
    issued_to: date | None = None,
    number: str = "",
) -> QuerySet[Invoice]:
    """Documents filtered as the list page and the API offer it.

    `customer` is a customer code, `legal_entity` an entity code, `period` a month
    "YYYY-MM" (documents whose period starts in it); issue dates are inclusive.
    Raises ValueError for a malformed period.
    """
    qs = Invoice.objects.select_related(
        "legal_entity", "customer", "currency", "contract", "credits"
    )
    if customer:
        qs = qs.filter(customer__code=customer)
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    if period:
        month = parse_period(period)
        qs = qs.filter(period_start__gte=month.start, period_start__lt=month.end)
    if issued_from:
        qs = qs.filter(issue_date__gte=issued_from)
    if issued_to:
        qs = qs.filter(issue_date__lte=issued_to)
    if number:
        qs = qs.filter(number=number)
    return qs.order_by("-period_start", "-id")


def invoice_detail(*, pk: int) -> Invoice:
    return (
        Invoice.objects.select_related(
            "legal_entity", "customer", "currency", "contract", "credits", "billing_run"
        )
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=InvoiceLine.objects.select_related("usage_summary__metric").order_by(
                    "position"
                ),
            ),
            Prefetch("tax_lines", queryset=InvoiceTaxLine.objects.order_by("id")),
            Prefetch("corrections", queryset=Invoice.objects.order_by("correction_no")),
        )
        .get(pk=pk)
    )


def invoice_line(*, pk: int) -> InvoiceLine:
    return InvoiceLine.objects.select_related(
        "invoice",
        "invoice__currency",
        "invoice__customer",
        "usage_summary",
        "usage_summary__metric",
        "credits_line",
    ).get(pk=pk)


def line_events(*, line: InvoiceLine) -> QuerySet:  # type: ignore[type-arg]
    """The usage events behind a usage line (through its summary), in seq order; none for other lines."""
    if line.usage_summary_id is None:
        from metering.models import UsageEvent

        return UsageEvent.objects.none()
    return summary_events(summary=line.usage_summary)


def event_invoice_lines(*, event_seq: int) -> QuerySet[InvoiceLine]:
    """The invoice lines an event was billed on (every summary revision including it)."""
    from metering.models import UsageEvent

    event = UsageEvent.objects.get(seq=event_seq)
    return (
        InvoiceLine.objects.filter(usage_summary__in=summaries_for_event(event=event))
        .select_related("invoice", "usage_summary")
        .order_by("invoice_id", "position")
    )


def billing_runs(*, legal_entity: str = "") -> QuerySet[BillingRun]:
    """Runs, newest month first, each with `drafts`: how many of its invoices still wait to be finalized."""
    qs = BillingRun.objects.select_related("legal_entity").annotate(
        drafts=Count("invoices", filter=Q(invoices__status="draft"))
    )
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    return qs.order_by("-period_start", "legal_entity__code")


def finance_events(*, after_id: int = 0, limit: int = 500) -> list[FinanceEvent]:
    """Events with id > after_id, oldest first: what a consumer reads next."""
    return list(FinanceEvent.objects.filter(id__gt=after_id).order_by("id")[:limit])


def price_plans() -> QuerySet[PricePlan]:
    return PricePlan.objects.select_related("currency").prefetch_related(
        Prefetch("versions", queryset=PricePlanVersion.objects.order_by("effective_from"))
    )


def contracts(*, legal_entity: str = "", customer: str = "") -> QuerySet[Contract]:
    amendments = ContractAmendment.objects.select_related("plan").order_by("effective_from")
    qs = Contract.objects.select_related("customer", "legal_entity", "plan").prefetch_related(
        Prefetch("amendments", queryset=amendments)  # their plans too: no query per amendment
    )
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    if customer:
        qs = qs.filter(customer__code=customer)
    return qs.order_by("legal_entity__code", "code")
