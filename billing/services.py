"""Every write of billing: plans, contracts, billing runs, finalize, void, credit memos, finance events.

Each service opens its transaction, changes rows, writes one audit entry and,
for finance outcomes, a canonical `FinanceEvent` in the same transaction.
Batch services (a billing run, finalizing a run's drafts) write one audit
entry per batch transaction naming every document it touched.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, F, Max, Q, Value, When
from django.utils import timezone

from billing import error_codes
from billing.drafting import DraftDocument, DraftLine, SummaryInfo, draft_period, usage_windows
from billing.models import (
    BillingRun,
    Cadence,
    Contract,
    ContractAmendment,
    DocumentCounter,
    DocumentKind,
    EntityBillingSettings,
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTaxLine,
    PricePlan,
    PricePlanVersion,
    RunStatus,
)
from billing.money import ROUND_HALF_UP, minor_unit
from billing.periods import Period, local_date_of, period_bounds_utc
from billing.rating import RatingError, components_from_config, overrides_from_dict, rate_period
from billing.tax import TaxableLine, TaxContext, TaxEngine, TaxLineResult, tax_engine
from billing.terms import ContractTerms, PlanCache, TermsChange, TermsError, period_ending_in
from core import locks
from core.errors import AppError, Conflict
from core.models import Currency, Customer, LegalEntity
from core.actors import Actor
from exceptions.services import audit_record, case_open_or_update
from metering.selectors import summary_event_values
from metering.services import usage_summaries_close, usage_summarize_window

ZERO = Decimal(0)
T = TypeVar("T")

#: Contracts rated and written per transaction: each batch is one bulk insert of
#: invoices, one of lines, one of tax lines and one progress update.
RUN_BATCH_SIZE = 1000
#: Rows per INSERT statement when bulk-creating lines and finance events.
BULK_INSERT_BATCH_SIZE = 2000
#: Drafts finalized per transaction (numbers, summaries closed, finance events).
FINALIZE_BATCH_SIZE = 2000
#: A run still "running" after this long is taken to have died and may be restarted.
RUN_STALE_AFTER = timedelta(hours=2)
#: How far back the run looks for late usage in finalized periods (events older
#: than EVENT_MAX_AGE_DAYS are rejected by metering, so nothing older can change).
LATE_USAGE_EXTRA_DAYS = 31

# Which role may do what is enforced by the views (see billing/views.py); the
# services trust their caller and record the actor.


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rating_error(exc: RatingError | TermsError, code: str) -> AppError:
    extra: dict[str, Any] = {"rating_code": exc.code}
    if isinstance(exc, RatingError):
        extra["path"] = exc.path
    return AppError(exc.message, code=code, extra=extra)


def entity_rounding(legal_entity: LegalEntity) -> str:
    cfg = EntityBillingSettings.objects.filter(legal_entity=legal_entity).first()
    return cfg.rounding if cfg else ROUND_HALF_UP


# --------------------------------------------------------------------------- plans


def price_plan_create(
    *, code: str, name: str, currency: Currency, actor: Actor, default_tax_code: str = "standard"
) -> PricePlan:
    with transaction.atomic():
        plan = PricePlan(code=code, name=name, currency=currency, default_tax_code=default_tax_code)
        plan.full_clean()
        plan.save()
        audit_record(
            actor=actor,
            action="price_plan.create",
            obj=plan,
            after={"code": code, "currency": currency.code, "default_tax_code": default_tax_code},
        )
    return plan


def price_plan_version_add(
    *,
    plan: PricePlan,
    effective_from: date,
    components: list[dict[str, Any]],
    actor: Actor,
    component_meta: dict[str, Any] | None = None,
    note: str = "",
) -> PricePlanVersion:
    """A new version of the plan's prices from `effective_from` (after the latest version's date)."""
    try:
        parsed = components_from_config(components)
    except RatingError as exc:
        raise _rating_error(exc, error_codes.INVALID_PLAN) from None
    meta = component_meta or {}
    codes = {c.code for c in parsed}
    unknown = sorted(set(meta) - codes)
    if unknown:
        raise AppError(
            f"component_meta names unknown component(s): {', '.join(unknown)}.",
            code=error_codes.INVALID_PLAN,
            extra={"path": "component_meta"},
        )
    with transaction.atomic():
        PricePlan.objects.select_for_update().get(pk=plan.pk)
        latest = plan.versions.order_by("-effective_from").first()
        if latest is not None and effective_from <= latest.effective_from:
            raise AppError(
                f"A new version must start after {latest.effective_from} (version {latest.version}).",
                code=error_codes.PLAN_VERSION_ORDER,
                extra={"latest_effective_from": str(latest.effective_from)},
            )
        version = PricePlanVersion(
            plan=plan,
            version=(latest.version + 1) if latest else 1,
            effective_from=effective_from,
            components=[c.to_dict() for c in parsed],
            component_meta=meta,
            note=note,
        )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action="price_plan.version_add",
            obj=plan,
            after={
                "version": version.version,
                "effective_from": str(effective_from),
                "components": version.components,
                "component_meta": meta,
            },
        )
    return version


# --------------------------------------------------------------------------- contracts


def _check_overrides(*, plan: PricePlan, overrides: dict[str, Any], on: date) -> None:
    try:
        parsed = overrides_from_dict(overrides or {})
    except RatingError as exc:
        raise _rating_error(exc, error_codes.INVALID_OVERRIDES) from None
    version = plan.versions.filter(effective_from__lte=on).order_by("-effective_from").first()
    version = version or plan.versions.order_by("effective_from").first()
    if version is None:
        raise AppError(f"Plan {plan.code} has no price version yet.", code=error_codes.INVALID_PLAN)
    try:  # overrides must name components of the plan and fit their types
        rate_period(
            components=components_from_config(version.components),
            usages={},
            minor_units=plan.currency.minor_units,
            overrides=parsed,
        )
    except RatingError as exc:
        raise _rating_error(exc, error_codes.INVALID_OVERRIDES) from None


def contract_create(
    *,
    code: str,
    customer: Customer,
    plan: PricePlan,
    start_date: date,
    actor: Actor,
    end_date: date | None = None,
    cadence: str = Cadence.MONTHLY,
    anchor_day: int = 1,
    anchor_month: int = 1,
    overrides: dict[str, Any] | None = None,
    prepaid_balance: Decimal = ZERO,
    currency: Currency | None = None,
) -> Contract:
    currency = currency or plan.currency
    if currency.pk != plan.currency_id:
        raise AppError(
            f"Plan {plan.code} is priced in {plan.currency_id}, the contract in {currency.code}.",
            code=error_codes.CURRENCY_MISMATCH,
        )
    _check_overrides(plan=plan, overrides=overrides or {}, on=start_date)
    with transaction.atomic():
        contract = Contract(
            code=code,
            customer=customer,
            legal_entity_id=customer.legal_entity_id,
            currency=currency,
            plan=plan,
            overrides=overrides or {},
            cadence=cadence,
            anchor_day=anchor_day,
            anchor_month=anchor_month,
            start_date=start_date,
            end_date=end_date,
            prepaid_balance=prepaid_balance,
        )
        try:
            contract.full_clean()
        except ValidationError as exc:
            raise AppError(
                "The contract is not valid; see extra.fields.",
                code=error_codes.INVALID_CONTRACT,
                extra={"fields": exc.message_dict},
            ) from None
        contract.save()
        audit_record(
            actor=actor, action="contract.create", obj=contract, after=_contract_snapshot(contract)
        )
    return contract


def _contract_snapshot(c: Contract) -> dict[str, Any]:
    return {
        "code": c.code,
        "customer": c.customer_id,
        "plan": c.plan_id,
        "currency": c.currency_id,
        "overrides": c.overrides,
        "cadence": c.cadence,
        "anchor_day": c.anchor_day,
        "anchor_month": c.anchor_month,
        "start_date": str(c.start_date),
        "end_date": None if c.end_date is None else str(c.end_date),
        "prepaid_balance": str(c.prepaid_balance),
    }


def contract_amend(
    *,
    contract: Contract,
    effective_from: date,
    reason: str,
    actor: Actor,
    plan: PricePlan | None = None,
    overrides: dict[str, Any] | None = None,
) -> ContractAmendment:
    """New terms from `effective_from`; refused inside a period already invoiced."""
    if not reason.strip():
        raise AppError("An amendment needs a reason.", code=error_codes.REASON_REQUIRED)
    if plan is None and overrides is None:
        raise AppError(
            "An amendment changes the plan, the overrides or both.",
            code=error_codes.INVALID_CONTRACT,
        )
    with transaction.atomic():
        contract = Contract.objects.select_for_update().get(pk=contract.pk)
        if effective_from <= contract.start_date or (
            contract.end_date and effective_from >= contract.end_date
        ):
            raise AppError(
                "The amendment must take effect inside the contract's term.",
                code=error_codes.INVALID_CONTRACT,
            )
        if plan is not None and plan.currency_id != contract.currency_id:
            raise AppError(
                f"Plan {plan.code} is priced in {plan.currency_id}, the contract in "
                f"{contract.currency_id}.",
                code=error_codes.CURRENCY_MISMATCH,
            )
        billed = contract.invoices.filter(
            kind=DocumentKind.INVOICE, period_end__gt=effective_from
        ).first()
        if billed is not None:
            raise AppError(
                f"{effective_from} falls in {billed.period_start}..{billed.period_end}, already invoiced "
                f"({billed}); correct that invoice with a credit memo instead.",
                code=error_codes.AMENDMENT_IN_BILLED_PERIOD,
                extra={"invoice_id": billed.pk},
            )
        effective_plan = plan or _terms_on(contract, effective_from)[0]
        if overrides is not None:
            _check_overrides(plan=effective_plan, overrides=overrides, on=effective_from)
        amendment = ContractAmendment(
            contract=contract,
            effective_from=effective_from,
            plan=plan,
            overrides=overrides,
            reason=reason,
        )
        amendment.full_clean()
        amendment.save()
        audit_record(
            actor=actor,
            action="contract.amend",
            obj=contract,
            reason=reason,
            after={
                "effective_from": str(effective_from),
                "plan": plan.pk if plan else None,
                "overrides": overrides,
            },
        )
    return amendment


def contract_end(*, contract: Contract, end_date: date, reason: str, actor: Actor) -> Contract:
    """End a contract on `end_date` (exclusive); refused inside or before an invoiced period, and
    on or before an amendment's effective date (the amendment would fall outside the term).

    Fixed fees already billed in advance for the period containing the end date are not
    re-billed: issue a credit memo for the unused part.
    """
    if not reason.strip():
        raise AppError("Ending a contract needs a reason.", code=error_codes.REASON_REQUIRED)
    with transaction.atomic():
        contract = Contract.objects.select_for_update().get(pk=contract.pk)
        if end_date <= contract.start_date:
            raise AppError(
                "The end date must be after the start date.", code=error_codes.INVALID_CONTRACT
            )
        billed = contract.invoices.filter(
            kind=DocumentKind.INVOICE, period_end__gt=end_date
        ).first()
        if billed is not None:
            raise AppError(
                f"{end_date} falls in or before {billed.period_start}..{billed.period_end}, already invoiced "
                f"({billed}).",
                code=error_codes.AMENDMENT_IN_BILLED_PERIOD,
                extra={"invoice_id": billed.pk},
            )
        late = (
            contract.amendments.filter(effective_from__gte=end_date)
            .order_by("effective_from")
            .first()
        )
        if late is not None:  # contract_amend keeps amendments inside the term; so does this
            raise AppError(
                f"An amendment takes effect on {late.effective_from}, on or after {end_date}: the contract "
                f"must end after {late.effective_from}.",
                code=error_codes.INVALID_CONTRACT,
                extra={"amendment_effective_from": str(late.effective_from)},
            )
        before = None if contract.end_date is None else str(contract.end_date)
        contract.end_date = end_date
        contract.save(update_fields=["end_date"])
        audit_record(
            actor=actor,
            action="contract.end",
            obj=contract,
            reason=reason,
            before={"end_date": before},
            after={"end_date": str(end_date)},
        )
    return contract


def _terms_on(contract: Contract, day: date) -> tuple[PricePlan, dict[str, Any]]:
    plan, overrides = contract.plan, contract.overrides
    for a in contract.amendments.filter(effective_from__lte=day).order_by("effective_from"):
        plan = a.plan or plan
        overrides = a.overrides if a.overrides is not None else overrides
    return plan, overrides


def contract_terms(contracts: Sequence[Contract]) -> dict[int, ContractTerms]:
    """Terms over time of many contracts (one query for all amendments)."""
    amendments: dict[int, list[ContractAmendment]] = defaultdict(list)
    for a in ContractAmendment.objects.filter(contract__in=[c.pk for c in contracts]).order_by(
        "effective_from"
    ):
        amendments[a.contract_id].append(a)
    out = {}
    for c in contracts:
        changes = [
            TermsChange(effective_from=c.start_date, plan_id=c.plan_id, overrides=c.overrides or {})
        ]
        for a in amendments.get(c.pk, ()):
            prev = changes[-1]
            changes.append(
                TermsChange(
                    effective_from=a.effective_from,
                    plan_id=a.plan_id or prev.plan_id,
                    overrides=a.overrides if a.overrides is not None else prev.overrides,
                )
            )
        out[c.pk] = ContractTerms(
            contract_id=c.pk,
            customer_id=c.customer_id,
            start_date=c.start_date,
            end_date=c.end_date,
            cadence=c.cadence,
            anchor_day=c.anchor_day,
            anchor_month=c.anchor_month,  # type: ignore[arg-type]
            changes=tuple(changes),
        )
    return out


def plan_cache(plan_ids: Iterable[int]) -> PlanCache:
    cache = PlanCache()
    ids = set(plan_ids)
    for plan in PricePlan.objects.filter(pk__in=ids):
        cache.default_tax_codes[plan.pk] = plan.default_tax_code
    for v in PricePlanVersion.objects.filter(plan__in=ids):
        cache.add_version(
            plan_id=v.plan_id,
            version_id=v.pk,
            effective_from=v.effective_from,
            components=v.components,
            component_meta=v.component_meta,
        )
    return cache


# --------------------------------------------------------------------------- finance events


def _lock_finance_events() -> None:
    """Serialise finance-event writers until commit so ids become visible in id order (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [locks.FINANCE_EVENTS])


def finance_events_record(events: Sequence[FinanceEvent]) -> None:
    """Append finance events in the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("finance events are recorded inside the transaction of the change")
    if events:
        _lock_finance_events()
        FinanceEvent.objects.bulk_create(events, batch_size=BULK_INSERT_BATCH_SIZE)


def _money(value: Decimal, minor_units: int) -> str:
    return str(value.quantize(Decimal(1).scaleb(-minor_units)))


def document_payload(
    inv: Invoice,
    lines: Sequence[InvoiceLine],
    tax_lines: Sequence[InvoiceTaxLine],
    *,
    minor_units: int,
    customer_code: str,
    contract_code: str,
    credits_number: str | None,
) -> dict[str, Any]:
    """The stable JSON shape of a document in `invoice.finalized` / `credit_memo.issued` (schema 1)."""
    m = minor_units
    return {
        "schema": 1,
        "document": {
            "id": inv.pk,
            "kind": inv.kind,
            "number": inv.number,
            "issue_date": str(inv.issue_date),
            "legal_entity_id": inv.legal_entity_id,
            "customer_id": inv.customer_id,
            "customer_code": customer_code,
            "contract_id": inv.contract_id,
            "contract_code": contract_code,
            "currency": inv.currency_id,
            "period_start": str(inv.period_start),
            "period_end": str(inv.period_end),
            "subtotal": _money(inv.subtotal, m),
            "tax_total": _money(inv.tax_total, m),
            "total": _money(inv.total, m),
            "credits_id": inv.credits_id,
            "credits_number": credits_number,
            "reason": inv.reason,
        },
        "lines": [
            {
                "id": ln.pk,
                "position": ln.position,
                "kind": ln.kind,
                "component": ln.component,
                "metric": ln.metric,
                "description": ln.description,
                "quantity": str(ln.quantity),
                "unit_price": None if ln.unit_price is None else str(ln.unit_price),
                "amount": _money(ln.amount, m),
                "tax_code": ln.tax_code,
                "service_start": str(ln.service_start),
                "service_end": str(ln.service_end),
                "usage_summary_id": ln.usage_summary_id,
                "credits_line_id": ln.credits_line_id,
            }
            for ln in lines
        ],
        "tax_lines": [
            {
                "name": t.name,
                "tax_code": t.tax_code,
                "jurisdiction": t.jurisdiction,
                "rate": str(t.rate),
                "taxable_amount": _money(t.taxable_amount, m),
                "amount": _money(t.amount, m),
            }
            for t in tax_lines
        ],
    }


# --------------------------------------------------------------------------- billing runs


def month_ready_at(*, legal_entity: LegalEntity, month: Period) -> datetime:
    """When a month may be billed: its end in the entity's time zone plus the grace window."""
    _, end = period_bounds_utc(period=month, tz=legal_entity.timezone)
    return end + timedelta(hours=settings.LEDGERLINE["BILLING_GRACE_HOURS"])


def billing_run_request(
    *, legal_entity: LegalEntity, month: Period, actor: Actor, now: datetime | None = None
) -> BillingRun:
    """The run of `legal_entity` for `month` (created if new), refused before the grace window passed."""
    now = now or timezone.now()
    ready = month_ready_at(legal_entity=legal_entity, month=month)
    if now < ready:
        raise AppError(
            f"{month.start:%Y-%m} of {legal_entity.code} closes for billing at {ready:%Y-%m-%d %H:%M} UTC "
            f"({settings.LEDGERLINE['BILLING_GRACE_HOURS']} h grace for late usage).",
            code=error_codes.PERIOD_NOT_CLOSED,
            extra={"ready_at": ready.isoformat()},
        )
    with transaction.atomic():
        run, created = BillingRun.objects.select_for_update().get_or_create(
            legal_entity=legal_entity,
            period_start=month.start,
            defaults={"period_end": month.end, "requested_by": actor.label},
        )
        if (
            not created
            and run.status == RunStatus.RUNNING
            and run.started_at
            and now - run.started_at < RUN_STALE_AFTER
        ):
            raise Conflict(
                f"The {run.label} run of {legal_entity.code} is running.",
                code=error_codes.RUN_IN_PROGRESS,
                extra={"run_id": run.pk},
            )
        if created:
            audit_record(
                actor=actor,
                action="billing_run.create",
                obj=run,
                after={"legal_entity": legal_entity.code, "period": run.label},
            )
    return run


def billing_run_start(*, legal_entity: LegalEntity, month: Period, actor: Actor) -> BillingRun:
    """Request the run and hand it to the task queue once the request commits (the UI button)."""
    with transaction.atomic():
        run = billing_run_request(legal_entity=legal_entity, month=month, actor=actor)
        BillingRun.objects.filter(pk=run.pk).update(status=RunStatus.PENDING)
        audit_record(
            actor=actor, action="billing_run.enqueue", obj=run, after={"status": RunStatus.PENDING}
        )

        def enqueue() -> None:
            from django_q.tasks import async_task

            async_task(
                "billing.tasks.billing_run_task",
                run.pk,
                actor.label,
                task_name=f"billing-run-{run.pk}",
            )

        transaction.on_commit(enqueue)
    run.refresh_from_db()
    return run


class _SummaryIndex:
    """Usage summaries a run fetched, looked up by (customer, metric code, window)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, str, datetime, datetime], Any] = {}
        self._by_id: dict[int, Any] = {}
        self._codes: dict[int, str] = {}

    def add(self, summaries: Iterable[Any]) -> None:
        summaries = list(summaries)
        missing = {s.metric_id for s in summaries} - set(self._codes)
        if missing:
            from metering.models import UsageSummary

            metric_model = UsageSummary._meta.get_field("metric").related_model
            self._codes.update(
                metric_model.objects.filter(pk__in=missing).values_list("pk", "code")
            )  # type: ignore[union-attr]
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

    def get(self, summary_id: int) -> Any:
        return self._by_id.get(summary_id)


def _summarize(
    needs: Mapping[tuple[datetime, datetime], set[int]], index: _SummaryIndex, actor: Actor
) -> None:
    """One usage_summarize_window call per window, for the customers that need it."""
    for (start, end), customers in sorted(needs.items()):
        index.add(
            usage_summarize_window(
                period_start=start, period_end=end, customer_ids=sorted(customers), actor=actor
            )
        )


@dataclass
class _Todo:
    contract: Contract
    terms: ContractTerms
    period: Period


def _tax_context(
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


def _taxes(
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
class _NewDocument:
    invoice: Invoice
    lines: list[DraftLine]
    taxes: list[TaxLineResult]
    credits_lines: list[int | None] | None = None


def _document(
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


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (list, dict)):
        return json.dumps(value).translate(_COPY_ESCAPES)
    return str(value).translate(_COPY_ESCAPES)


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
    columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column) for f in fields)
    text = "".join("\t".join(_copy_value(v) for v in row) + "\n" for row in rows)
    with connection.cursor() as cur:
        cur.copy_expert(f"COPY {model._meta.db_table} ({columns}) FROM STDIN", io.StringIO(text))


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


def _write_documents(docs: Sequence[_NewDocument]) -> list[Invoice]:
    """Insert documents (bulk insert returning ids), then their lines and tax lines (COPY on PostgreSQL)."""
    invoices = Invoice.objects.bulk_create(
        [d.invoice for d in docs], batch_size=BULK_INSERT_BATCH_SIZE
    )
    _write_lines(docs, invoices)
    return invoices


def _write_lines(docs: Sequence[_NewDocument], invoices: Sequence[Invoice]) -> None:
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


def _rating_failed(
    *, run: BillingRun, contract: Contract, period: Period, exc: Exception, actor: Actor
) -> None:
    code = getattr(exc, "code", "error")
    case_open_or_update(
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


ProgressFn = Callable[[int, int], None]


def billing_run_execute(
    *, run_id: int, actor: Actor, progress: ProgressFn | None = None, now: datetime | None = None
) -> BillingRun:
    """Rate every contract period of the run's month into draft invoices, then late-usage corrections.

    Safe to run again: contracts already invoiced for the period are skipped
    (and the database refuses a second invoice for a contract period).
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = BillingRun.objects.select_for_update().select_related("legal_entity").get(pk=run_id)
        if (
            run.status == RunStatus.RUNNING
            and run.started_at
            and now - run.started_at < RUN_STALE_AFTER
        ):
            raise Conflict(
                f"Run {run.pk} is already running.",
                code=error_codes.RUN_IN_PROGRESS,
                extra={"run_id": run.pk},
            )
        before = run.status
        run.status, run.started_at, run.finished_at, run.error = RunStatus.RUNNING, now, None, ""
        run.processed = 0
        run.save(update_fields=["status", "started_at", "finished_at", "error", "processed"])
        audit_record(
            actor=actor,
            action="billing_run.start",
            obj=run,
            before={"status": before},
            after={"status": RunStatus.RUNNING},
        )
    try:
        created, adjustments = _run_month(run, actor=actor, progress=progress)
    except Exception as exc:
        with transaction.atomic():
            BillingRun.objects.filter(pk=run.pk).update(
                status=RunStatus.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
            )
            run.refresh_from_db()
            audit_record(
                actor=actor,
                action="billing_run.fail",
                obj=run,
                before={"status": RunStatus.RUNNING},
                after={"status": RunStatus.FAILED, "error": str(exc)[:500]},
            )
        case_open_or_update(
            kind="billing_run_failed",
            fingerprint=f"billing:run:{run.pk}",
            title=f"Billing run {run.label} of {run.legal_entity.code} failed",
            actor=actor,
            error_message=str(exc)[:2000],
            source=run,
            legal_entity_id=run.legal_entity_id,
        )
        raise
    with transaction.atomic():
        BillingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE, finished_at=timezone.now()
        )
        run.refresh_from_db()
        audit_record(
            actor=actor,
            action="billing_run.finish",
            obj=run,
            before={"status": RunStatus.RUNNING},
            after={
                "status": RunStatus.DONE,
                "invoices_created": created,
                "adjustments_created": adjustments,
            },
        )
    return run


def _run_month(run: BillingRun, *, actor: Actor, progress: ProgressFn | None) -> tuple[int, int]:
    entity = run.legal_entity
    tz = entity.timezone
    month = Period(start=run.period_start, end=run.period_end)
    rounding = entity_rounding(entity)
    contracts = list(
        Contract.objects.filter(legal_entity=entity, start_date__lt=month.end)
        .filter(Q(end_date__isnull=True) | Q(end_date__gt=month.start - timedelta(days=366)))
        .select_related("customer", "currency")
        .order_by("pk")
    )
    terms = contract_terms(contracts)
    plans = plan_cache({ch.plan_id for t in terms.values() for ch in t.changes})
    done = set(
        Invoice.objects.filter(
            legal_entity=entity,
            kind=DocumentKind.INVOICE,
            period_end__gt=month.start,
            period_end__lte=month.end,
        ).values_list("contract_id", "period_start", "period_end")
    )
    todo: list[_Todo] = []
    for c in contracts:
        t = terms[c.pk]
        period = period_ending_in(terms=t, month=month)
        if period is None or t.active(period) is None or (c.pk, period.start, period.end) in done:
            continue
        todo.append(_Todo(contract=c, terms=t, period=period))

    # usage: one summarize call per distinct window, for the customers that need it
    needs: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
    failed: set[int] = set()
    for item in todo:
        try:
            for window in usage_windows(terms=item.terms, period=item.period, tz=tz, plans=plans):
                needs[window].add(item.contract.customer_id)
        except TermsError as exc:
            _rating_failed(
                run=run, contract=item.contract, period=item.period, exc=exc, actor=actor
            )
            failed.add(item.contract.pk)
    index = _SummaryIndex()
    _summarize(needs, index, actor)
    BillingRun.objects.filter(pk=run.pk).update(total=len(todo))
    if progress:
        progress(0, len(todo))

    engine = tax_engine()
    created = 0
    processed = 0
    for batch in _chunks(todo, RUN_BATCH_SIZE):
        docs: list[_NewDocument] = []
        for item in batch:
            if item.contract.pk in failed:
                continue
            c = item.contract
            try:
                draft = draft_period(
                    terms=item.terms,
                    period=item.period,
                    tz=tz,
                    plans=plans,
                    usage=index,
                    minor_units=c.currency.minor_units,
                    rounding=rounding,
                    prepaid_balance=c.prepaid_balance.quantize(minor_unit(c.currency.minor_units)),
                )
            except (RatingError, TermsError) as exc:
                _rating_failed(run=run, contract=c, period=item.period, exc=exc, actor=actor)
                continue
            context = _tax_context(
                c.customer,
                legal_entity_id=entity.pk,
                tax_date=item.period.end - timedelta(days=1),
                minor_units=c.currency.minor_units,
                rounding=rounding,
            )
            taxes = _taxes(engine, context, draft.lines)
            docs.append(
                _NewDocument(
                    invoice=_document(
                        kind=DocumentKind.INVOICE,
                        contract=c,
                        period=item.period,
                        draft=draft,
                        taxes=taxes,
                        rounding=rounding,
                        run=run,
                    ),
                    lines=draft.lines,
                    taxes=taxes,
                )
            )
        processed += len(batch)
        with transaction.atomic():
            invoices = _write_documents(docs)
            _apply_prepaid(docs)
            BillingRun.objects.filter(pk=run.pk).update(
                processed=processed, invoices_created=run.invoices_created + created + len(docs)
            )
            if invoices:
                audit_record(
                    actor=actor,
                    action="billing_run.drafts_create",
                    obj=run,
                    after={
                        "invoice_ids": [i.pk for i in invoices],
                        "contract_ids": [i.contract_id for i in invoices],
                    },
                )
        created += len(docs)
        if progress:
            progress(processed, len(todo))

    adjustments = _late_usage_corrections(
        run, month=month, rounding=rounding, actor=actor, engine=engine
    )
    return created, adjustments


def _apply_prepaid(docs: Sequence[_NewDocument]) -> None:
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


# --------------------------------------------------------------------------- late usage


def _late_usage_corrections(
    run: BillingRun, *, month: Period, rounding: str, actor: Actor, engine: TaxEngine
) -> int:
    """Adjustment invoices / credit memos for finalized periods whose usage changed (revision + 1)."""
    entity = run.legal_entity
    tz = entity.timezone
    lookback = month.start - timedelta(
        days=settings.LEDGERLINE["EVENT_MAX_AGE_DAYS"] + LATE_USAGE_EXTRA_DAYS
    )
    originals = list(
        Invoice.objects.filter(
            legal_entity=entity,
            kind=DocumentKind.INVOICE,
            status__in=[InvoiceStatus.FINALIZED, InvoiceStatus.PAID],
            period_end__gt=lookback,
            period_end__lte=month.start,
        )
        .exclude(billing_run=run)
        .select_related("contract", "contract__customer", "contract__currency")
        .order_by("pk")
    )
    if not originals:
        return 0
    contracts = {o.contract_id: o.contract for o in originals}
    terms = contract_terms(list(contracts.values()))
    plans = plan_cache({ch.plan_id for t in terms.values() for ch in t.changes})
    needs: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
    periods: dict[int, Period] = {}
    for o in originals:
        periods[o.pk] = Period(start=o.period_start, end=o.period_end)
        try:
            for window in usage_windows(
                terms=terms[o.contract_id], period=periods[o.pk], tz=tz, plans=plans
            ):
                needs[window].add(o.customer_id)
        except TermsError:
            continue
    index = _SummaryIndex()
    _summarize(needs, index, actor)
    _discard_moved_corrections([o.pk for o in originals], actor=actor)

    # what was billed per charge: the original and the run-made corrections so far
    billed_lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    corrections = Invoice.objects.filter(
        credits__in=[o.pk for o in originals], billing_run__isnull=False
    ).exclude(status=InvoiceStatus.VOID)
    revisions_done: dict[int, set[int]] = defaultdict(set)
    next_no: dict[int, int] = {}
    for corr in corrections:
        revisions_done[corr.credits_id].add(corr.usage_revision)
    for row in (
        Invoice.objects.filter(credits__in=[o.pk for o in originals])
        .values("credits_id")
        .annotate(n=Max("correction_no"))
    ):
        next_no[row["credits_id"]] = row["n"] + 1
    for ln in InvoiceLine.objects.filter(
        Q(invoice__in=[o.pk for o in originals]) | Q(invoice__in=corrections)
    ).select_related("invoice"):
        original_id = ln.invoice.credits_id or ln.invoice_id
        billed_lines[original_id].append(ln)

    docs: list[_NewDocument] = []
    for o in originals:
        c = o.contract
        try:
            draft = draft_period(
                terms=terms[c.pk],
                period=periods[o.pk],
                tz=tz,
                plans=plans,
                usage=index,
                minor_units=c.currency.minor_units,
                rounding=o.rounding,
            )
        except (RatingError, TermsError) as exc:
            _rating_failed(run=run, contract=c, period=periods[o.pk], exc=exc, actor=actor)
            continue
        lines = billed_lines[o.pk]
        billed_summaries = {ln.usage_summary_id for ln in lines if ln.usage_summary_id}
        new_summaries = {ln.summary_id for ln in draft.lines if ln.summary_id}
        if new_summaries <= billed_summaries:
            continue  # no summary changed since it was billed
        if draft.usage_revision in revisions_done[o.pk] and draft.usage_revision > 0:
            continue
        doc = _correction(
            original=o,
            draft=draft,
            billed=lines,
            run=run,
            engine=engine,
            correction_no=next_no.get(o.pk, 1),
        )
        if doc is not None:
            docs.append(doc)
    if not docs:
        return 0
    with transaction.atomic():
        invoices = _write_documents(docs)
        BillingRun.objects.filter(pk=run.pk).update(adjustments_created=len(invoices))
        audit_record(
            actor=actor,
            action="billing_run.corrections_create",
            obj=run,
            after={
                "invoice_ids": [i.pk for i in invoices],
                "credits": [i.credits_id for i in invoices],
            },
        )
    return len(invoices)


def _discard_moved_corrections(original_ids: Sequence[int], *, actor: Actor) -> None:
    """Delete run-made correction drafts whose usage moved since they were drafted, so the
    run builds them again from the summaries as they are now."""
    drafts = list(
        Invoice.objects.filter(
            credits__in=original_ids, status=InvoiceStatus.DRAFT, billing_run__isnull=False
        ).select_related("legal_entity")
    )
    moved = _stale_drafts(drafts)
    if not moved:
        return
    ids = [inv.pk for inv in moved]
    with transaction.atomic():
        InvoiceLine.objects.filter(invoice__in=ids).delete()
        InvoiceTaxLine.objects.filter(invoice__in=ids).delete()
        Invoice.objects.filter(pk__in=ids, status=InvoiceStatus.DRAFT).delete()
        audit_record(
            actor=actor,
            action="invoices.discard_moved_corrections",
            object_type="billing.invoice",
            object_id=str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}",
            object_repr=f"{len(ids)} correction draft(s)",
            reason="usage changed since drafted",
            before={"ids": ids, "credits": [inv.credits_id for inv in moved]},
        )


def _correction(
    *,
    original: Invoice,
    draft: DraftDocument,
    billed: Sequence[InvoiceLine],
    run: BillingRun,
    engine: TaxEngine,
    correction_no: int,
) -> _NewDocument | None:
    """The difference between the re-rated period and what was billed, as one document."""
    billed_by_key: dict[tuple[str, str, date], Decimal] = defaultdict(lambda: ZERO)
    for ln in billed:
        if ln.kind != "credit_drawdown":
            billed_by_key[(ln.kind, ln.component, ln.service_start)] += ln.amount
    # re-rated with the fees too (they do not depend on usage, so they cancel out) and without
    # prepaid credit (already drawn when the original was drafted)
    new_by_key: dict[tuple[str, str, date], DraftLine] = {}
    new_amounts: dict[tuple[str, str, date], Decimal] = defaultdict(lambda: ZERO)
    for dl in draft.lines:
        if dl.kind != "credit_drawdown":
            new_by_key.setdefault(dl.key, dl)
            new_amounts[dl.key] += dl.amount
    deltas: list[DraftLine] = []
    for key in sorted(set(billed_by_key) | set(new_by_key), key=lambda k: (k[2], k[0], k[1])):
        new = new_by_key.get(key)
        delta = new_amounts.get(key, ZERO) - billed_by_key.get(key, ZERO)
        if delta == 0:
            continue
        template = new or next(
            ln for ln in billed if (ln.kind, ln.component, ln.service_start) == key
        )
        deltas.append(
            DraftLine(
                kind=template.kind,
                component=template.component,
                metric=template.metric,
                description=f"Late usage correction: {template.description}"[:500],
                quantity=template.quantity,
                unit_price=template.unit_price,
                tiers=list(template.tiers) if template.tiers else [],
                amount=delta,
                tax_code=template.tax_code,
                service_start=template.service_start,
                service_end=template.service_end,
                summary_id=new.summary_id if new else None,
                rated_quantity=new.rated_quantity if new else None,
                rated_event_count=new.rated_event_count if new else None,
            )
        )
    if not deltas:
        return None
    net = sum((d.amount for d in deltas), ZERO)
    contract = original.contract
    context = _tax_context(
        contract.customer,
        legal_entity_id=original.legal_entity_id,
        tax_date=original.period_end - timedelta(days=1),
        minor_units=contract.currency.minor_units,
        rounding=original.rounding,
    )
    fix = DraftDocument(lines=deltas, usage_revision=draft.usage_revision)
    taxes = _taxes(engine, context, deltas)
    kind = DocumentKind.ADJUSTMENT if net > 0 else DocumentKind.CREDIT_MEMO
    credits_lines: list[int | None] = []
    if kind == DocumentKind.CREDIT_MEMO:
        remaining = {ln.pk: ln.amount - ln.credited_amount for ln in billed if ln.amount > 0}
        for d in deltas:
            target = None
            if d.amount < 0:
                for ln in billed:
                    if (ln.kind, ln.component, ln.service_start) == d.key and remaining.get(
                        ln.pk, ZERO
                    ) >= -d.amount:
                        target = ln.pk
                        remaining[ln.pk] += d.amount
                        break
            credits_lines.append(target)
    period = Period(start=original.period_start, end=original.period_end)
    reason = f"Late usage for {period} (usage revision {draft.usage_revision}) corrects {original.number}"
    invoice = _document(
        kind=kind,
        contract=contract,
        period=period,
        draft=fix,
        taxes=taxes,
        rounding=original.rounding,
        run=run,
        credits=original,
        correction_no=correction_no,
        reason=reason,
    )
    return _NewDocument(
        invoice=invoice, lines=deltas, taxes=taxes, credits_lines=credits_lines or None
    )


# --------------------------------------------------------------------------- finalize


def _lock_counter(*, legal_entity_id: int, series: str, year: int) -> DocumentCounter:
    DocumentCounter.objects.get_or_create(legal_entity_id=legal_entity_id, series=series, year=year)
    return DocumentCounter.objects.select_for_update().get(
        legal_entity_id=legal_entity_id, series=series, year=year
    )


def _prefixes(entity_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    out = {pk: ("INV", "CN") for pk in entity_ids}
    for cfg in EntityBillingSettings.objects.filter(legal_entity__in=list(out)):
        out[cfg.legal_entity_id] = (cfg.invoice_prefix, cfg.credit_memo_prefix)
    return out


def _finalize_locked(
    invoices: Sequence[Invoice], *, actor: Actor, now: datetime, strict: bool = False
) -> list[Invoice]:
    """Number, freeze and announce drafts already locked by the caller (inside its transaction).

    A period invoice whose usage summaries moved since it was rated is rated again first, so
    the summary a line points to (and closes) is exactly what the line billed. A late-usage
    correction whose usage moved is left a draft (rebuilt by the next run of its billing run;
    `strict` refuses instead). Returns the documents finalized.
    """
    stale = _stale_drafts(invoices)
    if stale:
        moved = [inv for inv in stale if inv.kind != DocumentKind.INVOICE]
        if moved and strict:
            raise AppError(
                f"The usage of {moved[0]} changed since it was drafted; run billing for "
                f"{moved[0].billing_run.label if moved[0].billing_run else 'its month'} again to rebuild it.",
                code=error_codes.USAGE_CHANGED,
                extra={"invoice_id": moved[0].pk},
            )
        redo = [inv for inv in stale if inv.kind == DocumentKind.INVOICE]
        if redo:
            _redraft(redo, actor=actor)
        skipped = {inv.pk for inv in moved}
        invoices = [inv for inv in invoices if inv.pk not in skipped]
    if not invoices:
        return []
    entities = {inv.legal_entity_id: inv.legal_entity for inv in invoices}
    prefixes = _prefixes(entities)
    groups: dict[tuple[int, str, int], list[Invoice]] = defaultdict(list)
    for inv in invoices:
        inv.issue_date = local_date_of(ts=now, tz=entities[inv.legal_entity_id].timezone)
        series = "CN" if inv.kind == DocumentKind.CREDIT_MEMO else "INV"
        groups[(inv.legal_entity_id, series, inv.issue_date.year)].append(inv)
    for (entity_id, series, year), members in sorted(groups.items()):
        counter = _lock_counter(legal_entity_id=entity_id, series=series, year=year)
        prefix = prefixes[entity_id][0 if series == "INV" else 1]
        for inv in members:
            counter.last_number += 1
            inv.number = f"{prefix}-{year}-{counter.last_number:06d}"
        counter.save(update_fields=["last_number"])
    for inv in invoices:
        inv.status, inv.finalized_at = InvoiceStatus.FINALIZED, now
    ids = [inv.pk for inv in invoices]
    lines_by_invoice: dict[int, list[InvoiceLine]] = defaultdict(list)
    for ln in InvoiceLine.objects.filter(invoice__in=ids).order_by("invoice_id", "position"):
        lines_by_invoice[ln.invoice_id].append(ln)
    taxes_by_invoice: dict[int, list[InvoiceTaxLine]] = defaultdict(list)
    for t in InvoiceTaxLine.objects.filter(invoice__in=ids).order_by("invoice_id", "id"):
        taxes_by_invoice[t.invoice_id].append(t)
    _apply_credits(
        [inv for inv in invoices if inv.kind == DocumentKind.CREDIT_MEMO], lines_by_invoice
    )
    _store_final(invoices, now=now)
    summary_ids = [
        ln.usage_summary_id
        for lines in lines_by_invoice.values()
        for ln in lines
        if ln.usage_summary_id
    ]
    usage_summaries_close(summary_ids=summary_ids, actor=actor)
    refs = {inv.contract_id: (inv.contract.code, inv.customer.code) for inv in invoices}
    credits_numbers = dict(
        Invoice.objects.filter(pk__in={i.credits_id for i in invoices if i.credits_id}).values_list(
            "pk", "number"
        )
    )
    events = []
    for inv in invoices:
        contract_code, customer_code = refs[inv.contract_id]
        events.append(
            FinanceEvent(
                type="credit_memo.issued"
                if inv.kind == DocumentKind.CREDIT_MEMO
                else "invoice.finalized",
                legal_entity_id=inv.legal_entity_id,
                payload=document_payload(
                    inv,
                    lines_by_invoice[inv.pk],
                    taxes_by_invoice[inv.pk],
                    minor_units=inv.currency.minor_units,
                    customer_code=customer_code,
                    contract_code=contract_code,
                    credits_number=credits_numbers.get(inv.credits_id),
                ),
            )
        )
    finance_events_record(events)
    return list(invoices)


def _store_final(invoices: Sequence[Invoice], *, now: datetime) -> None:
    """Write status, number and issue date of finalized drafts: one UPDATE ... FROM VALUES on PostgreSQL."""
    if connection.vendor != "postgresql":
        Invoice.objects.bulk_update(
            invoices,
            ["status", "number", "issue_date", "finalized_at"],
            batch_size=FINALIZE_BATCH_SIZE,
        )
        return
    for batch in _chunks(invoices, FINALIZE_BATCH_SIZE):
        rows = ", ".join(["(%s, %s, %s::date)"] * len(batch))
        params: list[Any] = [InvoiceStatus.FINALIZED, now]
        for inv in batch:
            params += [inv.pk, inv.number, inv.issue_date]
        with connection.cursor() as cur:
            cur.execute(
                "UPDATE billing_invoice AS i SET status = %s, finalized_at = %s, number = v.number, "
                f"issue_date = v.issue_date FROM (VALUES {rows}) AS v(id, number, issue_date) "
                "WHERE i.id = v.id AND i.status = 'draft'",
                params,
            )
            if cur.rowcount != len(batch):
                raise RuntimeError(f"finalize wrote {cur.rowcount} of {len(batch)} invoices")


def _apply_credits(
    memos: Sequence[Invoice], lines_by_invoice: Mapping[int, list[InvoiceLine]]
) -> None:
    """Record on the credited documents how much is credited; refuse anything beyond what they hold."""
    if not memos:
        return
    originals = {
        o.pk: o
        for o in Invoice.objects.select_for_update().filter(pk__in={m.credits_id for m in memos})
    }
    credit_by_line: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for m in memos:
        original = originals[m.credits_id]
        if original.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            raise AppError(
                f"{original} is {original.status}; only finalized invoices can be credited.",
                code=error_codes.INVOICE_NOT_FINAL,
                extra={"invoice_id": original.pk},
            )
        amount = -m.total
        if original.credited_total + amount > original.total:
            raise AppError(
                f"Credit {amount} exceeds what is left to credit on {original} "
                f"({original.total - original.credited_total}).",
                code=error_codes.CREDIT_EXCEEDS,
                extra={
                    "invoice_id": original.pk,
                    "creditable": str(original.total - original.credited_total),
                },
            )
        original.credited_total += amount
        for ln in lines_by_invoice.get(m.pk, ()):
            if ln.credits_line_id and ln.amount < 0:
                credit_by_line[ln.credits_line_id] += -ln.amount
    targets = {
        ln.pk: ln
        for ln in InvoiceLine.objects.select_for_update().filter(pk__in=list(credit_by_line))
    }
    for line_id, amount in credit_by_line.items():
        ln = targets[line_id]
        if ln.credited_amount + amount > ln.amount:
            raise AppError(
                f"Credit {amount} exceeds what is left to credit on line {ln.position} "
                f"({ln.amount - ln.credited_amount}).",
                code=error_codes.CREDIT_EXCEEDS,
                extra={"line_id": ln.pk, "creditable": str(ln.amount - ln.credited_amount)},
            )
        ln.credited_amount += amount
    InvoiceLine.objects.bulk_update(list(targets.values()), ["credited_amount"])
    Invoice.objects.bulk_update(list(originals.values()), ["credited_total"])


def _stale_drafts(invoices: Sequence[Invoice]) -> list[Invoice]:
    """Drafts whose usage moved since they were rated: metering refreshed an open summary a line
    points to, or (period invoices) a metric that had no usage then has some now."""
    candidates = {
        inv.pk: inv
        for inv in invoices
        if inv.kind == DocumentKind.INVOICE or inv.billing_run_id is not None
    }
    if not candidates:
        return []
    from metering.models import UsageSummary

    stale = set(
        InvoiceLine.objects.filter(invoice__in=list(candidates), usage_summary__isnull=False)
        .filter(
            Q(usage_summary__closed_at__isnull=False)
            | ~Q(usage_summary__quantity=F("rated_quantity"))
            | ~Q(usage_summary__event_count=F("rated_event_count"))
        )
        .values_list("invoice_id", flat=True)
    )
    # usage lines rated at zero (no summary then): is there a summary now?
    wanted: dict[tuple[int, str, datetime, datetime], int] = {}
    rows = InvoiceLine.objects.filter(
        invoice__in=[
            i
            for i, inv in candidates.items()
            if i not in stale and inv.kind == DocumentKind.INVOICE
        ],
        kind="usage",
        usage_summary__isnull=True,
    ).values_list("invoice_id", "metric", "service_start", "service_end")
    for invoice_id, metric, start, end in rows:
        inv = candidates[invoice_id]
        lo, hi = period_bounds_utc(
            period=Period(start=start, end=end), tz=inv.legal_entity.timezone
        )
        wanted[(inv.customer_id, metric, lo, hi)] = invoice_id
    if wanted:
        found = UsageSummary.objects.filter(
            customer_id__in={k[0] for k in wanted},
            metric__code__in={k[1] for k in wanted},
            period_start__in={k[2] for k in wanted},
            closed_at__isnull=True,
        ).values_list("customer_id", "metric__code", "period_start", "period_end")
        stale |= {wanted[k] for k in found if k in wanted}
    return [candidates[pk] for pk in sorted(stale)]


def _redraft(invoices: Sequence[Invoice], *, actor: Actor) -> None:
    """Rate stale drafts again from their summaries as they are now (inside the caller's transaction)."""
    from metering.models import UsageSummary

    contracts = {inv.contract_id: inv.contract for inv in invoices}
    terms = contract_terms(list(contracts.values()))
    plans = plan_cache({ch.plan_id for t in terms.values() for ch in t.changes})
    index = _SummaryIndex()
    customers = {inv.customer_id for inv in invoices}
    windows: set[tuple[datetime, datetime]] = set()
    for inv in invoices:
        try:
            windows.update(
                usage_windows(
                    terms=terms[inv.contract_id],
                    period=Period(start=inv.period_start, end=inv.period_end),
                    tz=inv.legal_entity.timezone,
                    plans=plans,
                )
            )
        except (
            RatingError,
            TermsError,
        ) as exc:  # an error message, not a 500, as in draft_period below
            raise _rating_error(exc, error_codes.RATING_FAILED) from None
    index.add(
        UsageSummary.objects.filter(
            customer_id__in=customers,
            period_start__in={w[0] for w in windows},
            closed_at__isnull=True,
        )
    )
    engine = tax_engine()
    balances = dict(
        Contract.objects.filter(pk__in=list(contracts)).values_list("pk", "prepaid_balance")
    )
    docs: list[_NewDocument] = []
    docs_refund: list[_NewDocument] = []
    for inv in invoices:
        c = contracts[inv.contract_id]
        minor = inv.currency.minor_units
        period = Period(start=inv.period_start, end=inv.period_end)
        prepaid = (balances[c.pk] + inv.prepaid_applied).quantize(minor_unit(minor))
        try:
            draft = draft_period(
                terms=terms[c.pk],
                period=period,
                tz=inv.legal_entity.timezone,
                plans=plans,
                usage=index,
                minor_units=minor,
                rounding=inv.rounding,
                prepaid_balance=prepaid,
            )
        except (RatingError, TermsError) as exc:
            raise _rating_error(exc, error_codes.RATING_FAILED) from None
        context = _tax_context(
            inv.customer,
            legal_entity_id=inv.legal_entity_id,
            tax_date=period.end - timedelta(days=1),
            minor_units=minor,
            rounding=inv.rounding,
        )
        taxes = _taxes(engine, context, draft.lines)
        fresh = _document(
            kind=inv.kind,
            contract=c,
            period=period,
            draft=draft,
            taxes=taxes,
            rounding=inv.rounding,
            run=None,
        )
        # give back what the old draft drew; _apply_prepaid below draws what the new one needs
        balances[c.pk] += inv.prepaid_applied - fresh.prepaid_applied
        if inv.prepaid_applied:
            docs_refund.append(
                _NewDocument(
                    invoice=Invoice(contract_id=c.pk, prepaid_applied=-inv.prepaid_applied),
                    lines=[],
                    taxes=[],
                )
            )
        for name in ("subtotal", "tax_total", "total", "prepaid_applied", "usage_revision"):
            setattr(inv, name, getattr(fresh, name))
        docs.append(_NewDocument(invoice=inv, lines=draft.lines, taxes=taxes))
    ids = [inv.pk for inv in invoices]
    InvoiceLine.objects.filter(invoice__in=ids).delete()
    InvoiceTaxLine.objects.filter(invoice__in=ids).delete()
    Invoice.objects.bulk_update(
        invoices, ["subtotal", "tax_total", "total", "prepaid_applied", "usage_revision"]
    )
    _write_lines(docs, invoices)
    _apply_prepaid(docs_refund)
    _apply_prepaid(docs)
    audit_record(
        actor=actor,
        action="invoices.redraft",
        object_type="billing.invoice",
        object_id=str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}",
        object_repr=f"{len(ids)} draft(s) re-rated",
        reason="usage changed since the draft was rated",
        after={str(inv.pk): str(inv.total) for inv in invoices},
    )


def _locked_drafts(ids: Sequence[int]) -> list[Invoice]:
    return list(
        Invoice.objects.select_for_update(of=("self",))
        .filter(pk__in=list(ids), status=InvoiceStatus.DRAFT)
        .select_related("legal_entity", "currency", "contract", "customer")
        .order_by("pk")
    )


def invoice_finalize(*, invoice: Invoice, actor: Actor, now: datetime | None = None) -> Invoice:
    """Finalize one draft: gapless number, immutable, summaries closed, finance event."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked_drafts([invoice.pk])
        if not locked:
            current = Invoice.objects.get(pk=invoice.pk)
            raise AppError(
                f"{current} is {current.status}; only drafts can be finalized.",
                code=error_codes.INVOICE_NOT_DRAFT,
                extra={"status": current.status},
            )
        _finalize_locked(locked, actor=actor, now=now, strict=True)
        inv = locked[0]
        audit_record(
            actor=actor,
            action=f"{'credit_memo' if inv.kind == DocumentKind.CREDIT_MEMO else 'invoice'}"
            ".finalize",
            obj=inv,
            before={"status": InvoiceStatus.DRAFT},
            after={"status": inv.status, "number": inv.number, "total": str(inv.total)},
        )
    return inv


def invoices_finalize(
    *,
    invoice_ids: Iterable[int],
    actor: Actor,
    progress: ProgressFn | None = None,
    now: datetime | None = None,
) -> list[Invoice]:
    """Finalize the given drafts (ids that are not drafts any more are skipped), in batches.

    One transaction and one audit entry per batch of FINALIZE_BATCH_SIZE.
    """
    now = now or timezone.now()
    ids = sorted(set(invoice_ids))
    out: list[Invoice] = []
    for batch in _chunks(ids, FINALIZE_BATCH_SIZE):
        with transaction.atomic():
            locked = _locked_drafts(batch)
            if not locked:
                continue
            locked = _finalize_locked(locked, actor=actor, now=now)
            if not locked:
                continue
            audit_record(
                actor=actor,
                action="invoices.finalize",
                object_type="billing.invoice",
                object_id=f"{locked[0].pk}..{locked[-1].pk}",
                object_repr=f"{len(locked)} invoice(s)",
                before={"status": InvoiceStatus.DRAFT},
                after={
                    "status": InvoiceStatus.FINALIZED,
                    "numbers": {str(i.pk): i.number for i in locked},
                },
            )
        out.extend(locked)
        if progress:
            progress(len(out), len(ids))
    return out


def billing_run_finalize(
    *, run: BillingRun, actor: Actor, progress: ProgressFn | None = None
) -> list[Invoice]:
    """Finalize every draft of a run."""
    ids = list(run.invoices.filter(status=InvoiceStatus.DRAFT).values_list("pk", flat=True))
    return invoices_finalize(invoice_ids=ids, actor=actor, progress=progress)


# --------------------------------------------------------------------------- corrections


def invoice_void(*, invoice: Invoice, reason: str, actor: Actor) -> Invoice:
    """Void a finalized, unpaid, uncredited invoice (its number stays used)."""
    if not reason.strip():
        raise AppError("Voiding needs a reason.", code=error_codes.REASON_REQUIRED)
    with transaction.atomic():
        inv = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if inv.kind == DocumentKind.CREDIT_MEMO:
            raise AppError(
                "A credit memo is not voided; issue an invoice instead.",
                code=error_codes.INVOICE_NOT_FINAL,
            )
        if inv.status == InvoiceStatus.DRAFT:
            raise AppError(
                "A draft has no number to void; it can simply be left or re-rated.",
                code=error_codes.INVOICE_NOT_FINAL,
            )
        if inv.status == InvoiceStatus.PAID:
            raise AppError(f"{inv} is paid; credit it instead.", code=error_codes.INVOICE_PAID)
        if inv.status == InvoiceStatus.VOID:
            raise AppError(f"{inv} is already void.", code=error_codes.INVOICE_VOID)
        if inv.credited_total or inv.corrections.exclude(status=InvoiceStatus.VOID).exists():
            raise AppError(
                f"{inv} has credit memos or adjustments; credit the rest instead.",
                code=error_codes.INVOICE_CREDITED,
            )
        inv.status, inv.voided_at, inv.void_reason = InvoiceStatus.VOID, timezone.now(), reason
        inv.save(update_fields=["status", "voided_at", "void_reason"])
        finance_events_record(
            [
                FinanceEvent(
                    type="invoice.voided",
                    legal_entity_id=inv.legal_entity_id,
                    payload={
                        "schema": 1,
                        "document": {
                            "id": inv.pk,
                            "kind": inv.kind,
                            "number": inv.number,
                            "currency": inv.currency_id,
                            "total": str(inv.total),
                            "voided_at": inv.voided_at.isoformat(),
                            "reason": reason,
                        },
                    },
                )
            ]
        )
        audit_record(
            actor=actor,
            action="invoice.void",
            obj=inv,
            reason=reason,
            before={"status": InvoiceStatus.FINALIZED},
            after={"status": InvoiceStatus.VOID},
        )
    return inv


def invoice_mark_paid(*, invoice: Invoice, actor: Actor) -> Invoice:
    with transaction.atomic():
        inv = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if inv.status != InvoiceStatus.FINALIZED or inv.kind == DocumentKind.CREDIT_MEMO:
            raise AppError(
                f"{inv} is {inv.status}; only finalized invoices can be marked paid.",
                code=error_codes.INVOICE_NOT_FINAL,
            )
        inv.status, inv.paid_at = InvoiceStatus.PAID, timezone.now()
        inv.save(update_fields=["status", "paid_at"])
        finance_events_record(
            [
                FinanceEvent(
                    type="invoice.paid",
                    legal_entity_id=inv.legal_entity_id,
                    payload={
                        "schema": 1,
                        "document": {
                            "id": inv.pk,
                            "number": inv.number,
                            "currency": inv.currency_id,
                            "total": str(inv.total),
                            "paid_at": inv.paid_at.isoformat(),
                        },
                    },
                )
            ]
        )
        audit_record(
            actor=actor,
            action="invoice.mark_paid",
            obj=inv,
            before={"status": InvoiceStatus.FINALIZED},
            after={"status": InvoiceStatus.PAID},
        )
    return inv


def credit_memo_issue(
    *,
    invoice: Invoice,
    reason: str,
    actor: Actor,
    lines: Mapping[int, Decimal] | None = None,
    now: datetime | None = None,
) -> Invoice:
    """Issue a credit memo for the whole invoice (lines=None) or for amounts of some lines.

    Never exceeds what it credits: per line (amount - already credited) and per
    invoice (total - already credited); the database checks both again.
    """
    if not reason.strip():
        raise AppError("A credit memo needs a reason.", code=error_codes.REASON_REQUIRED)
    now = now or timezone.now()
    with transaction.atomic():
        original = (
            Invoice.objects.select_for_update()
            .select_related("contract", "customer", "currency")
            .get(pk=invoice.pk)
        )
        if original.kind == DocumentKind.CREDIT_MEMO or original.status not in (
            InvoiceStatus.FINALIZED,
            InvoiceStatus.PAID,
        ):
            raise AppError(
                f"{original} is a {original.kind} in status {original.status}; only finalized or paid "
                "invoices can be credited.",
                code=error_codes.INVOICE_NOT_FINAL,
            )
        originals_lines = list(original.lines.select_for_update().order_by("position"))
        minor = original.currency.minor_units
        draft_lines: list[DraftLine] = []
        credits_lines: list[int | None] = []
        if lines is None:
            if original.credited_total:
                raise AppError(
                    f"{original} is already partly credited; credit the remaining lines one by one.",
                    code=error_codes.CREDIT_EXCEEDS,
                    extra={"creditable": str(original.total - original.credited_total)},
                )
            for ln in originals_lines:
                draft_lines.append(_credit_line(ln, -ln.amount))
                credits_lines.append(ln.pk if ln.amount > 0 else None)
            taxes = [
                TaxLineResult(
                    name=t.name,
                    tax_code=t.tax_code,
                    jurisdiction=t.jurisdiction,
                    rate=t.rate,
                    taxable_amount=-t.taxable_amount,
                    amount=-t.amount,
                )
                for t in original.tax_lines.all()
            ]
        else:
            by_id = {ln.pk: ln for ln in originals_lines}
            for line_id, amount in sorted(lines.items()):
                ln = by_id.get(int(line_id))
                if ln is None:
                    raise AppError(
                        f"Line {line_id} is not a line of {original}.",
                        code=error_codes.CREDIT_LINE_UNKNOWN,
                        extra={"line_id": line_id},
                    )
                amount = Decimal(amount)
                if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-minor)):
                    raise AppError(
                        f"Credit amounts are positive and in whole minor units of {original.currency_id}.",
                        code=error_codes.CREDIT_EMPTY,
                        extra={"line_id": ln.pk},
                    )
                if amount > ln.amount - ln.credited_amount:
                    raise AppError(
                        f"Credit {amount} on line {ln.position} exceeds what is left to credit "
                        f"({ln.amount - ln.credited_amount}).",
                        code=error_codes.CREDIT_EXCEEDS,
                        extra={"line_id": ln.pk, "creditable": str(ln.amount - ln.credited_amount)},
                    )
                draft_lines.append(_credit_line(ln, -amount))
                credits_lines.append(ln.pk)
            context = _tax_context(
                original.customer,
                legal_entity_id=original.legal_entity_id,
                tax_date=original.period_end - timedelta(days=1),
                minor_units=minor,
                rounding=original.rounding,
            )
            taxes = _taxes(tax_engine(), context, draft_lines)
        if not draft_lines:
            raise AppError("Nothing to credit.", code=error_codes.CREDIT_EMPTY)
        correction_no = (original.corrections.aggregate(n=Max("correction_no"))["n"] or 0) + 1
        doc = _NewDocument(
            invoice=_document(
                kind=DocumentKind.CREDIT_MEMO,
                contract=original.contract,
                period=Period(start=original.period_start, end=original.period_end),
                draft=DraftDocument(lines=draft_lines),
                taxes=taxes,
                rounding=original.rounding,
                run=None,
                credits=original,
                correction_no=correction_no,
                reason=reason,
            ),
            lines=draft_lines,
            taxes=taxes,
            credits_lines=credits_lines,
        )
        if -doc.invoice.total > original.total - original.credited_total:
            raise AppError(
                f"Credit {-doc.invoice.total} exceeds what is left to credit on {original} "
                f"({original.total - original.credited_total}).",
                code=error_codes.CREDIT_EXCEEDS,
                extra={"creditable": str(original.total - original.credited_total)},
            )
        [memo] = _write_documents([doc])
        memo = _locked_drafts([memo.pk])[0]
        _finalize_locked([memo], actor=actor, now=now)
        audit_record(
            actor=actor,
            action="credit_memo.issue",
            obj=memo,
            reason=reason,
            after={
                "number": memo.number,
                "credits": original.number,
                "total": str(memo.total),
                "lines": {str(k): str(v) for k, v in (lines or {}).items()} or "whole",
            },
        )
    return memo


def _credit_line(ln: InvoiceLine, amount: Decimal) -> DraftLine:
    return DraftLine(
        kind=ln.kind,
        component=ln.component,
        metric=ln.metric,
        description=f"Credit: {ln.description}"[:500],
        quantity=ln.quantity,
        unit_price=ln.unit_price,
        tiers=[],
        amount=amount,
        tax_code=ln.tax_code,
        service_start=ln.service_start,
        service_end=ln.service_end,
        summary_id=None,
    )


__all__ = [
    "BULK_INSERT_BATCH_SIZE",
    "FINALIZE_BATCH_SIZE",
    "RUN_BATCH_SIZE",
    "billing_run_execute",
    "billing_run_finalize",
    "billing_run_request",
    "billing_run_start",
    "contract_amend",
    "contract_create",
    "contract_end",
    "credit_memo_issue",
    "finance_events_record",
    "invoice_finalize",
    "invoice_mark_paid",
    "invoice_void",
    "invoices_finalize",
    "price_plan_create",
    "price_plan_version_add",
]
