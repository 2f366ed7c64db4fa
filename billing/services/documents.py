"""Corrections of finalized documents and what happens to them after: void, payments, credit memo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.drafting import DraftDocument, DraftLine
from billing.models import (
    DocumentKind,
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentMethod,
)
from billing.periods import Period
from billing.selectors import InvoiceAction, invoice_balance_due, invoice_refusal
from billing.services.drafts import (
    draft_invoice,
    NewDocument,
    tax_context_for,
    compute_taxes,
    write_documents,
)
from billing.services._shared import claim_action_key, record_action_result
from billing.services.finalize import finalize_locked, locked_drafts
from billing.services.finance_events import finance_events_record
from billing.tax import TaxLineResult, tax_engine
from core.actors import Actor
from core.errors import AppError
from core.formatting import money_plain
from exceptions.services import audit_record

# --------------------------------------------------------------------------- corrections


def invoice_void(
    *, invoice: Invoice, reason: str, actor: Actor, idempotency_key: str | None = None
) -> Invoice:
    """Void a finalized, unpaid, uncredited invoice (its number stays used).

    `idempotency_key` (a form's one-time token, a client's key): the first
    request with it applies the action, any other raises `Conflict`
    (`billing_already_applied`) and applies nothing.
    """
    if not reason.strip():
        raise AppError("Voiding needs a reason.", code=BillingErrorCode.REASON_REQUIRED)
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key, action=InvoiceAction.VOID, invoice=invoice, actor=actor
        )
        inv = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if refusal := invoice_refusal(invoice=inv, action=InvoiceAction.VOID):
            raise AppError(refusal.message, code=refusal.code)
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
            action=BillingAuditAction.INVOICE_VOID,
            obj=inv,
            reason=reason,
            before={"status": InvoiceStatus.FINALIZED},
            after={"status": InvoiceStatus.VOID},
        )
    return inv


def invoice_payment_record(
    *,
    invoice: Invoice,
    amount: Decimal | None,
    received_on: date,
    method: str,
    reference: str = "",
    actor: Actor,
    idempotency_key: str | None = None,
) -> Payment:
    """Record a payment received against a finalized invoice.

    A payment is positive, in whole minor units of the invoice's currency and at
    most the balance due (None: the whole balance due, read under the lock). The payment that brings the balance to zero marks the
    invoice paid and writes `invoice.paid` (its payload keeps the document keys
    and gains `payment`); a partial one writes `invoice.payment_recorded`.
    `idempotency_key` as for the other actions: a double submit records once.
    """
    if method not in PaymentMethod.values:
        raise AppError(
            f"Payment method must be one of {', '.join(PaymentMethod.values)}.",
            code=BillingErrorCode.PAYMENT_INVALID,
            extra={"field": "method"},
        )
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key, action=InvoiceAction.MARK_PAID, invoice=invoice, actor=actor
        )
        inv = Invoice.objects.select_for_update().select_related("currency").get(pk=invoice.pk)
        if refusal := invoice_refusal(invoice=inv, action=InvoiceAction.MARK_PAID):
            raise AppError(refusal.message, code=refusal.code)
        minor = inv.currency.minor_units
        balance = invoice_balance_due(invoice=inv)
        amount = balance if amount is None else Decimal(amount)
        if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-minor)):
            raise AppError(
                f"A payment is positive and in whole minor units of {inv.currency_id}.",
                code=BillingErrorCode.PAYMENT_INVALID,
                extra={"field": "amount"},
            )
        if amount > balance:
            raise AppError(
                f"{money_plain(amount, minor_units=minor)} exceeds the balance due of {inv} "
                f"({money_plain(balance, minor_units=minor)} {inv.currency_id}).",
                code=BillingErrorCode.PAYMENT_EXCEEDS,
                extra={"balance_due": money_plain(balance, minor_units=minor)},
            )
        payment = Payment(
            invoice=inv,
            currency_id=inv.currency_id,
            amount=amount,
            received_on=received_on,
            method=method,
            reference=reference.strip(),
            recorded_by=actor.label,
        )
        payment.full_clean()
        payment.save()
        left = balance - amount
        facts = {
            "id": payment.pk,
            "amount": money_plain(amount, minor_units=minor),
            "date": received_on.isoformat(),
            "method": method,
            "reference": payment.reference,
        }
        document: dict[str, object] = {
            "id": inv.pk,
            "number": inv.number,
            "currency": inv.currency_id,
            "total": str(inv.total),
        }
        if left == 0:
            inv.status, inv.paid_at = InvoiceStatus.PAID, timezone.now()
            inv.save(update_fields=["status", "paid_at"])
            document["paid_at"] = inv.paid_at.isoformat()
        balance_after = money_plain(left, minor_units=minor)
        finance_events_record(
            [
                FinanceEvent(
                    type="invoice.paid" if left == 0 else "invoice.payment_recorded",
                    legal_entity_id=inv.legal_entity_id,
                    payload={
                        "schema": 1,
                        "document": document,
                        "payment": {**facts, "balance_due": balance_after},
                    },
                )
            ]
        )
        audit_record(
            actor=actor,
            action=(
                BillingAuditAction.INVOICE_MARK_PAID
                if left == 0
                else BillingAuditAction.PAYMENT_RECORD
            ),
            obj=inv,
            before={
                "status": InvoiceStatus.FINALIZED,
                "balance_due": money_plain(balance, minor_units=minor),
            },
            after={"status": inv.status, "balance_due": balance_after, "payment": facts},
        )
    return payment


def invoice_mark_paid(
    *, invoice: Invoice, actor: Actor, idempotency_key: str | None = None
) -> Invoice:
    """Record that a finalized invoice was paid in full today (its whole balance due).

    `idempotency_key` (a form's one-time token, a client's key): the first
    request with it applies the action, any other raises `Conflict`
    (`billing_already_applied`) and applies nothing.
    """
    payment = invoice_payment_record(
        invoice=invoice,
        amount=None,
        received_on=timezone.localdate(),
        method=PaymentMethod.OTHER,
        actor=actor,
        idempotency_key=idempotency_key,
    )
    return payment.invoice


def credit_memo_issue(
    *,
    invoice: Invoice,
    reason: str,
    actor: Actor,
    lines: Mapping[int, Decimal] | None = None,
    now: datetime | None = None,
    idempotency_key: str | None = None,
) -> Invoice:
    """Issue a credit memo for the whole invoice (lines=None) or for amounts of some lines.

    Never exceeds what it credits: per line (amount - already credited) and per
    invoice (total - already credited); the database checks both again.

    `idempotency_key` (a form's one-time token, a client's key): the first
    request with it applies the action, any other raises `Conflict`
    (`billing_already_applied`) and applies nothing.
    """
    if not reason.strip():
        raise AppError("A credit memo needs a reason.", code=BillingErrorCode.REASON_REQUIRED)
    now = now or timezone.now()
    with transaction.atomic():
        claim = claim_action_key(
            key=idempotency_key, action=InvoiceAction.CREDIT, invoice=invoice, actor=actor
        )
        original = (
            Invoice.objects.select_for_update()
            .select_related("contract", "customer", "currency")
            .get(pk=invoice.pk)
        )
        if refusal := invoice_refusal(invoice=original, action=InvoiceAction.CREDIT):
            raise AppError(refusal.message, code=refusal.code)
        draft_lines, credits_lines, taxes = _credit_lines(
            original, list(original.lines.select_for_update().order_by("position")), lines
        )
        if not draft_lines:
            raise AppError("Nothing to credit.", code=BillingErrorCode.CREDIT_EMPTY)
        correction_no = (original.corrections.aggregate(n=Max("correction_no"))["n"] or 0) + 1
        doc = NewDocument(
            invoice=draft_invoice(
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
                code=BillingErrorCode.CREDIT_EXCEEDS,
                extra={"creditable": str(original.total - original.credited_total)},
            )
        [memo] = write_documents([doc])
        memo = locked_drafts([memo.pk])[0]
        finalize_locked([memo], actor=actor, now=now)
        record_action_result(claim, memo)
        audit_record(
            actor=actor,
            action=BillingAuditAction.CREDIT_MEMO_ISSUE,
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


def _credit_lines(
    original: Invoice, originals_lines: list[InvoiceLine], lines: Mapping[int, Decimal] | None
) -> tuple[list[DraftLine], list[int | None], list[TaxLineResult]]:
    """The lines, credited line ids and taxes of a credit memo for `lines` (None: the whole invoice)."""
    minor = original.currency.minor_units
    draft_lines: list[DraftLine] = []
    credits_lines: list[int | None] = []
    if lines is None:
        if original.credited_total:
            raise AppError(
                f"{original} is already partly credited; credit the remaining lines one by one.",
                code=BillingErrorCode.CREDIT_EXCEEDS,
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
            chosen = by_id.get(int(line_id))
            if chosen is None:
                raise AppError(
                    f"Line {line_id} is not a line of {original}.",
                    code=BillingErrorCode.CREDIT_LINE_UNKNOWN,
                    extra={"line_id": line_id},
                )
            ln = chosen
            amount = Decimal(amount)
            if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-minor)):
                raise AppError(
                    f"Credit amounts are positive and in whole minor units of {original.currency_id}.",
                    code=BillingErrorCode.CREDIT_EMPTY,
                    extra={"line_id": ln.pk},
                )
            if amount > ln.amount - ln.credited_amount:
                raise AppError(
                    f"Credit {amount} on line {ln.position} exceeds what is left to credit "
                    f"({ln.amount - ln.credited_amount}).",
                    code=BillingErrorCode.CREDIT_EXCEEDS,
                    extra={"line_id": ln.pk, "creditable": str(ln.amount - ln.credited_amount)},
                )
            draft_lines.append(_credit_line(ln, -amount))
            credits_lines.append(ln.pk)
        context = tax_context_for(
            original.customer,
            legal_entity_id=original.legal_entity_id,
            tax_date=original.period_end - timedelta(days=1),
            minor_units=minor,
            rounding=original.rounding,
        )
        taxes = compute_taxes(tax_engine(), context, draft_lines)
    return draft_lines, credits_lines, taxes


@dataclass(frozen=True)
class CreditPreview:
    """What a credit memo would carry, before it is issued (amounts negative, as on the memo)."""

    net: Decimal
    tax: Decimal
    gross: Decimal


def credit_memo_preview(*, invoice: Invoice, lines: Mapping[int, Decimal] | None) -> CreditPreview:
    """Net, tax and gross of the credit memo `credit_memo_issue` would issue; writes nothing.

    Raises the same `AppError`s as the issue would for amounts it refuses.
    """
    if refusal := invoice_refusal(invoice=invoice, action=InvoiceAction.CREDIT):
        raise AppError(refusal.message, code=refusal.code)
    draft_lines, _ids, taxes = _credit_lines(
        invoice, list(invoice.lines.order_by("position")), lines
    )
    if not draft_lines:
        raise AppError("Nothing to credit.", code=BillingErrorCode.CREDIT_EMPTY)
    net = sum((ln.amount for ln in draft_lines), Decimal(0))
    tax = sum((t.amount for t in taxes), Decimal(0))
    return CreditPreview(net=net, tax=tax, gross=net + tax)


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
