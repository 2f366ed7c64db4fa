"""Reads of billing: invoice lists and details, lineage, runs, finance events."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from billing.models import (
    BillingRun,
    Contract,
    ContractAmendment,
    DocumentKind,
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTaxLine,
    PricePlan,
    PricePlanVersion,
)
from billing.error_codes import BillingErrorCode
from billing import receivables, terms_tables
from billing.periods import parse_period
from core import error_codes as core_error_codes
from core.errors import NotFound
from core.formatting import money_plain
from core.models import Currency, Customer
from billing.histories import INVOICE, document_batches, drafted_by_runs
from exceptions.history import HistoryRow, history, own, related
from core.roles import FINANCE_APPROVER, FINANCE_CLERK, INTEGRATION_ADMIN, has_role
from metering.for_billing import UsageEvent, summaries_for_event, summary_events


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


#: Rows each section of the search page shows at most.
SEARCH_LIMIT = 50


@dataclass(frozen=True)
class SearchResult:
    customers: list[Customer]
    documents: list[Invoice]


def search(*, q: str) -> SearchResult:
    """Documents whose number contains `q` or whose customer's name or code does, and those customers."""
    q = q.strip()
    if not q:
        return SearchResult(customers=[], documents=[])
    who = Q(name__icontains=q) | Q(code__icontains=q)
    customers = list(
        Customer.objects.filter(who).select_related("legal_entity").order_by("name")[:SEARCH_LIMIT]
    )
    documents = list(
        Invoice.objects.filter(
            Q(number__icontains=q) | Q(customer__name__icontains=q) | Q(customer__code__icontains=q)
        )
        .select_related("customer", "currency", "legal_entity")
        .order_by("-issue_date", "-id")[:SEARCH_LIMIT]
    )
    return SearchResult(customers=customers, documents=documents)


@dataclass(frozen=True)
class CurrencyTotal:
    """The documents of one currency in a list and their summed totals (never across currencies)."""

    currency: Currency
    count: int
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal


def invoice_totals_by_currency(*, docs: QuerySet[Invoice]) -> list[CurrencyTotal]:
    """Totals per currency of `docs` (a filtered `invoices()`), void documents left out."""
    rows = (
        docs.exclude(status=InvoiceStatus.VOID)
        .order_by()
        .values("currency_id")
        .annotate(n=Count("id"), sub=Sum("subtotal"), tax=Sum("tax_total"), tot=Sum("total"))
        .order_by("currency_id")
    )
    currencies = Currency.objects.in_bulk([r["currency_id"] for r in rows])
    return [
        CurrencyTotal(
            currency=currencies[r["currency_id"]],
            count=r["n"],
            subtotal=r["sub"],
            tax_total=r["tax"],
            total=r["tot"],
        )
        for r in rows
    ]


#: Columns of the invoice list's CSV export; amounts are plain decimals in the currency's
#: minor units (core.formatting.money_plain) beside their own currency column.
INVOICE_CSV_HEADER = (
    "id",
    "number",
    "kind",
    "status",
    "legal_entity",
    "customer",
    "period_start",
    "period_end_inclusive",
    "issue_date",
    "currency",
    "subtotal",
    "tax_total",
    "total",
)


def invoice_csv_rows(*, docs: QuerySet[Invoice]) -> Iterator[tuple[str, ...]]:
    """The header, then one row per document of `docs`."""
    yield INVOICE_CSV_HEADER
    for inv in docs.iterator(chunk_size=500):
        mu = inv.currency.minor_units
        yield (
            str(inv.pk),
            inv.number or "",
            inv.kind,
            inv.status,
            inv.legal_entity.code,
            inv.customer.code,
            inv.period_start.isoformat(),
            (inv.period_end - timedelta(days=1)).isoformat(),
            inv.issue_date.isoformat() if inv.issue_date else "",
            inv.currency_id,
            money_plain(inv.subtotal, minor_units=mu),
            money_plain(inv.tax_total, minor_units=mu),
            money_plain(inv.total, minor_units=mu),
        )


def invoice_detail(*, pk: int) -> Invoice:
    """The document with what its pages show, `due_date` annotated (`receivables.due_on`)."""
    return (
        Invoice.objects.annotate(due_date=receivables.due_on())
        .select_related(
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


def line_events(*, line: InvoiceLine) -> QuerySet[UsageEvent]:
    """The usage events behind a usage line (through its summary), in seq order; none for other lines."""
    summary = line.usage_summary  # no query when the line has none
    if summary is None:
        return UsageEvent.objects.none()
    return summary_events(summary=summary)


def event_invoice_lines(*, event_seq: int) -> QuerySet[InvoiceLine]:
    """The invoice lines an event was billed on (every summary revision including it).

    Raises `NotFound` (`billing_not_found`) when there is no event `event_seq`.
    """
    event = UsageEvent.objects.filter(seq=event_seq).first()
    if event is None:
        raise NotFound(f"No usage event {event_seq}.", code=BillingErrorCode.NOT_FOUND)
    return (
        InvoiceLine.objects.filter(usage_summary__in=summaries_for_event(event=event))
        .select_related("invoice", "invoice__currency", "usage_summary")
        .order_by("invoice_id", "position")
    )


def billing_runs(*, legal_entity: str = "") -> QuerySet[BillingRun]:
    """Run attempts, newest month first and newest attempt first within it, each with
    `drafted`: the documents it drafted, and `drafts`: how many drafts of its month (of any
    attempt) still wait to be finalized."""
    month_drafts = (
        Invoice.objects.filter(
            billing_run__legal_entity_id=OuterRef("legal_entity_id"),
            billing_run__period_start=OuterRef("period_start"),
            status="draft",
        )
        .order_by()
        .values("billing_run__legal_entity_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    qs = BillingRun.objects.select_related("legal_entity").annotate(
        drafted=Count("invoices"),
        drafts=Coalesce(Subquery(month_drafts), 0),
    )
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    return qs.order_by("-period_start", "legal_entity__code", "-attempt")


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


# --------------------------------------------------------------------------- invoice actions


class InvoiceAction(StrEnum):
    """What a person may do to a document from its page."""

    FINALIZE = "finalize"
    MARK_PAID = "mark_paid"
    VOID = "void"
    CREDIT = "credit"

    @property
    def label(self) -> str:
        return {"mark_paid": "mark it paid", "credit": "issue credit memos"}.get(self, self.value)


#: Who may take each action (the views' role checks use the same sets).
ACTION_ROLES: dict[InvoiceAction, tuple[str, ...]] = {
    InvoiceAction.FINALIZE: (FINANCE_APPROVER, INTEGRATION_ADMIN),
    InvoiceAction.MARK_PAID: (FINANCE_CLERK, FINANCE_APPROVER),
    InvoiceAction.VOID: (FINANCE_APPROVER,),
    InvoiceAction.CREDIT: (FINANCE_APPROVER,),
}


@dataclass(frozen=True)
class Refusal:
    """Why an action is refused: the error code the service would raise and a sentence."""

    code: str
    message: str


@dataclass(frozen=True)
class InvoiceActions:
    """The actions a user may take on one invoice, and for each other action the reason why not."""

    allowed: frozenset[InvoiceAction]
    refused: Mapping[InvoiceAction, Refusal]

    def __contains__(self, action: object) -> bool:
        return action in self.allowed


def invoice_balance_due(*, invoice: Invoice) -> Decimal:
    """Total less credit memos less payments received (what the customer still owes)."""
    paid = invoice.payments.aggregate(s=Sum("amount"))["s"] or Decimal(0)
    return invoice.total - invoice.credited_total - paid


def invoice_refusal(*, invoice: Invoice, action: InvoiceAction) -> Refusal | None:
    """The document's status rules: why `action` cannot be taken on `invoice` now (None: it can).

    The services apply the same function to the row they have locked, so the
    page never offers what the service would refuse, and the service never
    trusts the page.
    """
    credit_memo = invoice.kind == DocumentKind.CREDIT_MEMO
    status = invoice.status
    if action == InvoiceAction.FINALIZE:
        if status != InvoiceStatus.DRAFT:
            return Refusal(
                BillingErrorCode.INVOICE_NOT_DRAFT,
                f"{invoice} is {status}; only drafts can be finalized.",
            )
        return None
    if action == InvoiceAction.MARK_PAID:
        if status != InvoiceStatus.FINALIZED or credit_memo:
            return Refusal(
                BillingErrorCode.INVOICE_NOT_FINAL,
                f"{invoice} is {status}; only finalized invoices can be marked paid.",
            )
        return None
    if action == InvoiceAction.CREDIT:
        if credit_memo or status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            return Refusal(
                BillingErrorCode.INVOICE_NOT_FINAL,
                f"{invoice} is a {invoice.kind} in status {status}; only finalized or paid "
                "invoices can be credited.",
            )
        return None
    if credit_memo:
        return Refusal(
            BillingErrorCode.INVOICE_NOT_FINAL,
            "A credit memo is not voided; issue an invoice instead.",
        )
    if status == InvoiceStatus.DRAFT:
        return Refusal(
            BillingErrorCode.INVOICE_NOT_FINAL,
            "A draft has no number to void; it can simply be left or re-rated.",
        )
    if status == InvoiceStatus.PAID:
        return Refusal(BillingErrorCode.INVOICE_PAID, f"{invoice} is paid; credit it instead.")
    if status == InvoiceStatus.VOID:
        return Refusal(BillingErrorCode.INVOICE_VOID, f"{invoice} is already void.")
    if invoice.credited_total or invoice.corrections.exclude(status=InvoiceStatus.VOID).exists():
        return Refusal(
            BillingErrorCode.INVOICE_CREDITED,
            f"{invoice} has credit memos or adjustments; credit the rest instead.",
        )
    return None


def invoice_actions(*, invoice: Invoice, user: AbstractBaseUser | AnonymousUser) -> InvoiceActions:
    """Which actions `user` may take on `invoice`: their role first, then the status rules."""
    allowed: set[InvoiceAction] = set()
    refused: dict[InvoiceAction, Refusal] = {}
    for action, roles in ACTION_ROLES.items():
        refusal = (
            None
            if has_role(user, *roles)
            else Refusal(
                core_error_codes.CoreErrorCode.PERMISSION_DENIED,
                f"Only {' or '.join(r.replace('_', ' ') for r in roles)} may {action.label}.",
            )
        ) or invoice_refusal(invoice=invoice, action=action)
        if refusal is None:
            allowed.add(action)
        else:
            refused[action] = refusal
    return InvoiceActions(allowed=frozenset(allowed), refused=refused)


# --------------------------------------------------------------------------- history


def invoice_history(*, invoice: Invoice) -> list[HistoryRow]:
    """The audit entries about `invoice`, oldest first: its own, the batch entries that name it
    (a run that drafted it, a batch that finalized or re-rated it) and its credit memos' and
    adjustments' own entries."""
    pk = str(invoice.pk)
    return history(
        [
            document_batches({pk: str(invoice)}),
            own(INVOICE, pk),
            related(INVOICE, {str(c.pk): str(c) for c in invoice.corrections.all()}),
            drafted_by_runs(
                [invoice.billing_run_id] if invoice.billing_run_id else [],
                key="invoice_ids",
                wanted=invoice.pk,
            ),
        ]
    )


def plan_version_on(*, plan: PricePlan, day: date) -> PricePlanVersion | None:
    """The plan's version in force on `day` (its first version before it starts)."""
    found = plan.versions.filter(effective_from__lte=day).order_by("-effective_from").first()
    return found or plan.versions.order_by("effective_from").first()


# --------------------------------------------------------------------------- contract and plan pages


@dataclass
class TermsInForce:
    """What a contract bills on a day: its plan, that plan's version then, the overrides."""

    on: date
    plan: PricePlan
    version: PricePlanVersion | None
    components: list[terms_tables.TermsRow]
    overrides: terms_tables.OverrideTables
    since: date


@dataclass
class AmendmentRow:
    amendment: ContractAmendment
    overrides: terms_tables.OverrideTables | None  # None: the overrides were left as they were


@dataclass
class ContractPage:
    contract: Contract
    in_force: TermsInForce | None
    base_overrides: terms_tables.OverrideTables
    amendments: list[AmendmentRow]
    invoices: list[Invoice]


def contract_page(*, pk: int, today: date) -> ContractPage:
    """A contract with the terms in force `today` (its local date), its own overrides and each
    amendment's as tables, and its documents (newest first)."""
    contract = Contract.objects.select_related("customer", "legal_entity", "plan", "currency").get(
        pk=pk
    )
    from billing.services.contracts import contract_terms  # a read; services import selectors

    amendments = list(contract.amendments.select_related("plan").order_by("effective_from"))
    terms = contract_terms([contract])[contract.pk]
    in_force: TermsInForce | None = None
    change = next((ch for ch in reversed(terms.changes) if ch.effective_from <= today), None)
    if change is not None:
        plan = PricePlan.objects.select_related("currency").get(pk=change.plan_id)
        version = (
            plan.versions.filter(effective_from__lte=today).order_by("-effective_from").first()
        )
        in_force = TermsInForce(
            on=today,
            plan=plan,
            version=version,
            components=terms_tables.component_rows(version.components if version else []),
            overrides=terms_tables.override_tables(change.overrides),
            since=change.effective_from,
        )
    invoices = list(
        Invoice.objects.filter(contract=contract)
        .select_related("currency", "billing_run")
        .order_by("-period_start", "-id")[:200]
    )
    return ContractPage(
        contract=contract,
        in_force=in_force,
        base_overrides=terms_tables.override_tables(contract.overrides),
        amendments=[
            AmendmentRow(
                a,
                None if a.overrides is None else terms_tables.override_tables(a.overrides),
            )
            for a in amendments
        ],
        invoices=invoices,
    )


@dataclass
class VersionTable:
    version: PricePlanVersion
    components: list[terms_tables.TermsRow]
    until: date | None


@dataclass
class PlanPage:
    plan: PricePlan
    versions: list[VersionTable]  # newest first
    contracts: list[Contract]  # created on the plan or amended to it


def plan_page(*, pk: int) -> PlanPage:
    plan = PricePlan.objects.select_related("currency").get(pk=pk)
    versions = list(plan.versions.order_by("effective_from"))
    tables = [
        VersionTable(
            v,
            terms_tables.component_rows(v.components),
            versions[i + 1].effective_from if i + 1 < len(versions) else None,
        )
        for i, v in enumerate(versions)
    ]
    amended = ContractAmendment.objects.filter(plan=plan).values("contract_id")
    contracts = list(
        Contract.objects.filter(Q(plan=plan) | Q(pk__in=amended))
        .select_related("customer", "legal_entity")
        .order_by("code")
    )
    return PlanPage(plan=plan, versions=tables[::-1], contracts=contracts)
