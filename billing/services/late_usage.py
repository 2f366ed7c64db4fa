"""Late usage: adjustment invoices and credit memos for finalized periods whose usage moved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q

from billing.drafting import DraftDocument, DraftLine, draft_period, usage_windows
from billing.audit_actions import BillingAuditAction
from billing.models import (
    BillingRun,
    DocumentKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTaxLine,
)
from billing.periods import Period
from billing.rating import RatingError
from billing.services._shared import LATE_USAGE_EXTRA_DAYS, ZERO
from billing.services.contracts import contract_terms, plan_cache
from billing.services.drafts import (
    draft_invoice,
    NewDocument,
    open_rating_failed_case,
    summarize_windows,
    SummaryIndex,
    tax_context_for,
    compute_taxes,
    write_documents,
)
from billing.services.finalize import stale_drafts
from billing.tax import TaxEngine
from billing.terms import TermsError
from core.actors import Actor
from exceptions.services import audit_record

# --------------------------------------------------------------------------- late usage


def late_usage_corrections(
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
    index = SummaryIndex()
    summarize_windows(needs, index, actor)
    _discard_moved_corrections([o.pk for o in originals], actor=actor)

    # what was billed per charge: the original and the run-made corrections so far
    billed_lines: dict[int, list[InvoiceLine]] = defaultdict(list)
    corrections = Invoice.objects.filter(
        credits__in=[o.pk for o in originals], billing_run__isnull=False
    ).exclude(status=InvoiceStatus.VOID)
    revisions_done: dict[int | None, set[int]] = defaultdict(set)
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

    docs: list[NewDocument] = []
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
            open_rating_failed_case(run=run, contract=c, period=periods[o.pk], exc=exc, actor=actor)
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
        invoices = write_documents(docs)
        BillingRun.objects.filter(pk=run.pk).update(adjustments_created=len(invoices))
        audit_record(
            actor=actor,
            action=BillingAuditAction.RUN_CORRECTIONS_CREATE,
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
    moved = stale_drafts(drafts)
    if not moved:
        return
    ids = [inv.pk for inv in moved]
    with transaction.atomic():
        InvoiceLine.objects.filter(invoice__in=ids).delete()
        InvoiceTaxLine.objects.filter(invoice__in=ids).delete()
        Invoice.objects.filter(pk__in=ids, status=InvoiceStatus.DRAFT).delete()
        audit_record(
            actor=actor,
            action=BillingAuditAction.DISCARD_MOVED_CORRECTIONS,
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
) -> NewDocument | None:
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
    context = tax_context_for(
        contract.customer,
        legal_entity_id=original.legal_entity_id,
        tax_date=original.period_end - timedelta(days=1),
        minor_units=contract.currency.minor_units,
        rounding=original.rounding,
    )
    fix = DraftDocument(lines=deltas, usage_revision=draft.usage_revision)
    taxes = compute_taxes(engine, context, deltas)
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
    invoice = draft_invoice(
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
    return NewDocument(
        invoice=invoice, lines=deltas, taxes=taxes, credits_lines=credits_lines or None
    )
