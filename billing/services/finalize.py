"""Finalize: gapless numbers, re-rating drafts whose usage moved, summaries closed, finance events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.drafting import draft_period, usage_windows
from billing.models import (
    BillingRun,
    Contract,
    DocumentCounter,
    DocumentKind,
    EntityBillingSettings,
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTaxLine,
)
from billing.money import minor_unit
from billing.periods import Period, local_date_of, period_bounds_utc
from billing.selectors import InvoiceAction, invoice_refusal
from billing.rating import RatingError
from billing.services._shared import (
    claim_action_key,
    FINALIZE_BATCH_SIZE,
    ZERO,
    chunks,
    rating_error,
)
from billing.services.contracts import contract_terms, plan_cache
from billing.services.drafts import (
    ProgressFn,
    apply_prepaid,
    draft_invoice,
    NewDocument,
    SummaryIndex,
    tax_context_for,
    compute_taxes,
    write_lines,
)
from billing.services.finance_events import document_payload, finance_events_record
from billing.tax import tax_engine
from billing.terms import TermsError
from core.actors import Actor
from core.errors import AppError
from exceptions.services import audit_record
from metering.for_billing import UsageSummary, usage_summaries_close

# --------------------------------------------------------------------------- finalize


def _lock_counter(*, legal_entity_id: int, series: str, year: int) -> DocumentCounter:
    DocumentCounter.objects.get_or_create(legal_entity_id=legal_entity_id, series=series, year=year)
    return DocumentCounter.objects.select_for_update().get(
        legal_entity_id=legal_entity_id, series=series, year=year
    )


def _prefixes(entity_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """Per entity: the invoice and credit memo prefixes, each led by the entity's own part."""
    out = {pk: ("INV", "CN") for pk in entity_ids}
    for cfg in EntityBillingSettings.objects.filter(legal_entity__in=list(out)):
        lead = f"{cfg.document_prefix}-" if cfg.document_prefix else ""
        out[cfg.legal_entity_id] = (
            f"{lead}{cfg.invoice_prefix}",
            f"{lead}{cfg.credit_memo_prefix}",
        )
    return out


def finalize_locked(
    invoices: Sequence[Invoice], *, actor: Actor, now: datetime, strict: bool = False
) -> list[Invoice]:
    """Number, freeze and announce drafts already locked by the caller (inside its transaction).

    A period invoice whose usage summaries moved since it was rated is rated again first, so
    the summary a line points to (and closes) is exactly what the line billed. A late-usage
    correction whose usage moved is left a draft (rebuilt by the next run of its billing run;
    `strict` refuses instead). Returns the documents finalized.
    """
    stale = stale_drafts(invoices)
    if stale:
        moved = [inv for inv in stale if inv.kind != DocumentKind.INVOICE]
        if moved and strict:
            raise AppError(
                f"The usage of {moved[0]} changed since it was drafted; run billing for "
                f"{moved[0].billing_run.label if moved[0].billing_run else 'its month'} again to rebuild it.",
                code=BillingErrorCode.USAGE_CHANGED,
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
    # numbered first: on PostgreSQL a credited total may only rise to what issued memos credit
    _store_final(invoices, now=now)
    _apply_credits(
        [inv for inv in invoices if inv.kind == DocumentKind.CREDIT_MEMO], lines_by_invoice
    )
    summary_ids = [
        ln.usage_summary_id
        for lines in lines_by_invoice.values()
        for ln in lines
        if ln.usage_summary_id
    ]
    usage_summaries_close(summary_ids=summary_ids, actor=actor)
    refs = {inv.contract_id: (inv.contract.code, inv.customer.code) for inv in invoices}
    credits_numbers: dict[int | None, str | None] = dict(
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
    for batch in chunks(invoices, FINALIZE_BATCH_SIZE):
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
    originals: dict[int | None, Invoice] = {
        o.pk: o
        for o in Invoice.objects.select_for_update().filter(pk__in={m.credits_id for m in memos})
    }
    credit_by_line: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for m in memos:
        original = originals[m.credits_id]
        if original.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID):
            raise AppError(
                f"{original} is {original.status}; only finalized invoices can be credited.",
                code=BillingErrorCode.INVOICE_NOT_FINAL,
                extra={"invoice_id": original.pk},
            )
        amount = -m.total
        if original.credited_total + amount > original.total:
            raise AppError(
                f"Credit {amount} exceeds what is left to credit on {original} "
                f"({original.total - original.credited_total}).",
                code=BillingErrorCode.CREDIT_EXCEEDS,
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
                code=BillingErrorCode.CREDIT_EXCEEDS,
                extra={"line_id": ln.pk, "creditable": str(ln.amount - ln.credited_amount)},
            )
        ln.credited_amount += amount
    InvoiceLine.objects.bulk_update(list(targets.values()), ["credited_amount"])
    Invoice.objects.bulk_update(list(originals.values()), ["credited_total"])


def stale_drafts(invoices: Sequence[Invoice]) -> list[Invoice]:
    """Drafts whose usage moved since they were rated: metering refreshed an open summary a line
    points to, or (period invoices) a metric that had no usage then has some now."""
    candidates = {
        inv.pk: inv
        for inv in invoices
        if inv.kind == DocumentKind.INVOICE or inv.billing_run_id is not None
    }
    if not candidates:
        return []
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
    contracts = {inv.contract_id: inv.contract for inv in invoices}
    terms = contract_terms(list(contracts.values()))
    plans = plan_cache({ch.plan_id for t in terms.values() for ch in t.changes})
    index = SummaryIndex()
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
            raise rating_error(exc, BillingErrorCode.RATING_FAILED) from None
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
    docs: list[NewDocument] = []
    docs_refund: list[NewDocument] = []
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
            raise rating_error(exc, BillingErrorCode.RATING_FAILED) from None
        context = tax_context_for(
            inv.customer,
            legal_entity_id=inv.legal_entity_id,
            tax_date=period.end - timedelta(days=1),
            minor_units=minor,
            rounding=inv.rounding,
        )
        taxes = compute_taxes(engine, context, draft.lines)
        fresh = draft_invoice(
            kind=inv.kind,
            contract=c,
            period=period,
            draft=draft,
            taxes=taxes,
            rounding=inv.rounding,
            run=None,
        )
        # give back what the old draft drew; apply_prepaid below draws what the new one needs
        balances[c.pk] += inv.prepaid_applied - fresh.prepaid_applied
        if inv.prepaid_applied:
            docs_refund.append(
                NewDocument(
                    invoice=Invoice(contract_id=c.pk, prepaid_applied=-inv.prepaid_applied),
                    lines=[],
                    taxes=[],
                )
            )
        for name in ("subtotal", "tax_total", "total", "prepaid_applied", "usage_revision"):
            setattr(inv, name, getattr(fresh, name))
        docs.append(NewDocument(invoice=inv, lines=draft.lines, taxes=taxes))
    ids = [inv.pk for inv in invoices]
    InvoiceLine.objects.filter(invoice__in=ids).delete()
    InvoiceTaxLine.objects.filter(invoice__in=ids).delete()
    Invoice.objects.bulk_update(
        invoices, ["subtotal", "tax_total", "total", "prepaid_applied", "usage_revision"]
    )
    write_lines(docs, invoices)
    apply_prepaid(docs_refund)
    apply_prepaid(docs)
    audit_record(
        actor=actor,
        action=BillingAuditAction.REDRAFT,
        object_type="billing.invoice",
        object_id=str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]}",
        object_repr=f"{len(ids)} draft(s) re-rated",
        reason="usage changed since the draft was rated",
        after={str(inv.pk): str(inv.total) for inv in invoices},
    )


def locked_drafts(ids: Sequence[int]) -> list[Invoice]:
    return list(
        Invoice.objects.select_for_update(of=("self",))
        .filter(pk__in=list(ids), status=InvoiceStatus.DRAFT)
        .select_related("legal_entity", "currency", "contract", "customer")
        .order_by("pk")
    )


def invoice_finalize(
    *,
    invoice: Invoice,
    actor: Actor,
    now: datetime | None = None,
    idempotency_key: str | None = None,
) -> Invoice:
    """Finalize one draft: gapless number, immutable, summaries closed, finance event.

    `idempotency_key`: as for `invoice_void` (a second use applies nothing).
    """
    now = now or timezone.now()
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key, action=InvoiceAction.FINALIZE, invoice=invoice, actor=actor
        )
        locked = locked_drafts([invoice.pk])
        if not locked:
            current = Invoice.objects.get(pk=invoice.pk)
            refusal = invoice_refusal(invoice=current, action=InvoiceAction.FINALIZE)
            assert refusal is not None  # locked_drafts locks every draft it is given
            raise AppError(refusal.message, code=refusal.code, extra={"status": current.status})
        finalize_locked(locked, actor=actor, now=now, strict=True)
        inv = locked[0]
        audit_record(
            actor=actor,
            action=BillingAuditAction.CREDIT_MEMO_FINALIZE
            if inv.kind == DocumentKind.CREDIT_MEMO
            else BillingAuditAction.INVOICE_FINALIZE,
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
    idempotency_key: str | None = None,
    subject: str = "",
) -> list[Invoice]:
    """Finalize the given drafts (ids that are not drafts any more are skipped), in batches.

    One transaction and one audit entry per batch of FINALIZE_BATCH_SIZE. `idempotency_key`
    (a form's one-time token) is claimed in its own transaction before the first batch, since
    each batch commits alone: a second submit is told and finalizes nothing.
    """
    now = now or timezone.now()
    ids = sorted(set(invoice_ids))
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="finalize_selected",
            actor=actor,
            subject=subject or f"{len(ids)} selected document(s)",
        )
    out: list[Invoice] = []
    for batch in chunks(ids, FINALIZE_BATCH_SIZE):
        with transaction.atomic():
            locked = locked_drafts(batch)
            if not locked:
                continue
            locked = finalize_locked(locked, actor=actor, now=now)
            if not locked:
                continue
            audit_record(
                actor=actor,
                action=BillingAuditAction.INVOICES_FINALIZE,
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
    *,
    run: BillingRun,
    actor: Actor,
    progress: ProgressFn | None = None,
    idempotency_key: str | None = None,
) -> list[Invoice]:
    """Finalize every draft of the run's month: those of this attempt and of earlier ones
    (`idempotency_key`: as for `invoices_finalize`)."""
    ids = list(
        Invoice.objects.filter(
            billing_run__legal_entity_id=run.legal_entity_id,
            billing_run__period_start=run.period_start,
            status=InvoiceStatus.DRAFT,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return invoices_finalize(
        invoice_ids=ids,
        actor=actor,
        progress=progress,
        idempotency_key=idempotency_key,
        subject=f"the drafts of billing run {run.label}",
    )
