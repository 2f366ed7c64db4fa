"""Customer disputes: a clerk opens a case on an invoice line from the invoice page.

The case shows the events behind the line (billing's lineage selectors) and ends in a credit
memo (the reverse action, under the four-eyes rule) or a reasoned rejection (dismiss with
`dispute_rejected`).
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist

from billing import selectors as billing_selectors
from core.errors import AppError
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, ExceptionCase
from exceptions.services import case_open_or_update
from exceptions.workbench.services import Caller, _require, case_comment

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
