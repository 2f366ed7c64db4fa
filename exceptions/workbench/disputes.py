"""Customer disputes: a clerk opens a case on an invoice line from the invoice page.

The case shows the events behind the line (billing's lineage selectors) and ends in one of:
- a credit memo of the line, or of part of it (the reverse action, under the four-eyes rule);
- an adjustment: a late-usage adjustment invoice or credit memo that billing's run issued
  against the disputed invoice settles it (`dispute_settle_by_adjustment`);
- a reasoned rejection (dismiss with `dispute_rejected`).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction

from billing import selectors as billing_selectors
from core.errors import AppError
from core.formatting import format_money
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, ExceptionCase
from exceptions.services import case_open_or_update
from exceptions.services import case_close
from exceptions.workbench.services import (
    Caller,
    _lock,
    _need_open,
    _reason,
    _require,
    _withdraw_pending,
    case_comment,
)

#: Invoice statuses a customer can dispute (a draft is corrected by re-rating, not disputed).
DISPUTABLE = ("finalized", "paid")


def dispute_open(*, invoice_id: int, line_id: int, comment: str, caller: Caller) -> ExceptionCase:
    """Open (or add to) the dispute case of one invoice line; the comment says what the
    customer disputes."""
    _require(caller, "comment")
    if not comment.strip():
        raise AppError("Say what the customer disputes.", code=ExceptionsErrorCode.REASON_REQUIRED)
    invoice = billing_selectors.invoice_detail(pk=invoice_id)
    if invoice.status not in DISPUTABLE or invoice.kind != "invoice":
        raise AppError(
            f"Only a finalized or paid invoice can be disputed ({invoice} is {invoice.status}).",
            code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE,
        )
    try:
        line = billing_selectors.invoice_line(pk=line_id)
    except ObjectDoesNotExist:
        line = None
    if line is None or line.invoice_id != invoice.pk:
        raise AppError(
            "That line is not on this invoice.", code=ExceptionsErrorCode.INVALID_CORRECTION
        )
    case, _ = case_open_or_update(
        kind=CaseKind.CUSTOMER_DISPUTE,
        fingerprint=f"dispute:line:{line.pk}",
        title=f"{invoice.customer.code} disputes line {line.position} of {invoice}",
        actor=caller.actor,
        severity="medium",
        error_message=comment.strip(),
        source=invoice,
        details={"invoice_line_id": line.pk, "line_position": line.position},
        amount_at_stake=line.amount,
        currency_id=invoice.currency_id,
        legal_entity_id=invoice.legal_entity_id,
        customer_id=invoice.customer_id,
    )
    case_comment(case_id=case.pk, body=comment, caller=caller)
    return case


#: Documents that settle a dispute as an adjustment: billing's late-usage corrections (and any
#: credit memo) issued against the disputed invoice, once finalized.
ADJUSTMENT_KINDS = ("adjustment", "credit_memo")
SETTLED = ("finalized", "paid")
ADJUSTMENT_REASONS = {
    "late_usage": "Late usage corrected by an adjustment",
    "partial_credit": "Part of the line credited",
    "other": "Other (see comment)",
}


def dispute_adjustments(*, case: ExceptionCase) -> list[Any]:
    """The finalized adjustment invoices and credit memos issued against the disputed invoice."""
    if case.kind != CaseKind.CUSTOMER_DISPUTE or not str(case.source_id).isdigit():
        return []
    return list(
        billing_selectors.invoices()
        .filter(credits_id=int(case.source_id), kind__in=ADJUSTMENT_KINDS, status__in=SETTLED)
        .order_by("id")[:50]
    )


def dispute_settle_by_adjustment(
    *,
    case_id: int,
    document_id: int,
    reason_code: str,
    comment: str,
    caller: Caller,
    version: int | None,
) -> ExceptionCase:
    """End a dispute with an adjustment billing already issued against the invoice (a
    late-usage adjustment invoice or credit memo). Nothing is issued here, so no second person
    is needed; the case resolves with resolution code `adjustment` (audited by the close)."""
    _require(caller, "settle_adjustment")
    _reason(reason_code, comment, ADJUSTMENT_REASONS)
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        if case.kind != CaseKind.CUSTOMER_DISPUTE:
            raise AppError(
                "Only a customer dispute is settled by an adjustment.",
                code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE,
            )
        doc = next((d for d in dispute_adjustments(case=case) if d.pk == document_id), None)
        if doc is None:
            raise AppError(
                "document: that is not a finalized adjustment or credit memo of the disputed "
                "invoice.",
                code=ExceptionsErrorCode.INVALID_CORRECTION,
                extra={"field": "document"},
            )
        _withdraw_pending(case, caller=caller, why="settled by an adjustment")
        return case_close(
            case=case,
            actor=caller.actor,
            status="resolved",
            resolution=f"Settled by {doc.get_kind_display().lower()} {doc} "
            f"({format_money(doc.total, currency=doc.currency_id, minor_units=doc.currency.minor_units)}"
            f"): {ADJUSTMENT_REASONS[reason_code]}. "
            f"{comment.strip()}",
            resolution_code="adjustment",
        )
