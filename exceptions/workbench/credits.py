"""A credit memo asked for on billing's invoice page goes through four eyes (invariant 6).

The invoice page previews the memo (billing), then posts here: a `credit_request` case is
opened on the invoice with a reversal proposal, under the same rule as the case page's
"reverse": above the kind's policy amount it waits for a different approver, who approves it
on the case page; then billing issues the credit memo.
"""

from __future__ import annotations

from decimal import Decimal

from billing import selectors as billing_selectors
from billing import services as billing_services
from core.errors import AppError
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, CaseProposal, ExceptionCase, ProposalKind
from exceptions.services import case_open_or_update
from exceptions.workbench.services import Caller, _require, proposal_submit

#: The reason code of a credit memo asked for on the invoice page (its reason is the comment).
INVOICE_PAGE_REASON = "invoice_page"


def credit_memo_request(
    *,
    invoice_id: int,
    lines: dict[int, Decimal] | None,
    reason: str,
    caller: Caller,
    token: str = "",
) -> tuple[ExceptionCase, CaseProposal]:
    """Open the credit request case of an invoice and propose the credit memo (whole invoice
    when `lines` is None, else these amounts per line). `token`: the page form's one-time
    token; the same token posted twice opens one case and one proposal."""
    _require(caller, "reverse")
    if not reason.strip():
        raise AppError(
            "reason: say why the invoice is credited.",
            code=ExceptionsErrorCode.REASON_REQUIRED,
            extra={"field": "reason"},
        )
    invoice = billing_selectors.invoice_detail(pk=invoice_id)
    # the same refusals as the issue itself (nothing to credit, over the line, not finalized)
    preview = billing_services.credit_memo_preview(invoice=invoice, lines=lines)
    fingerprint = f"credit_request:{invoice.pk}:{token or 'page'}"[:255]
    existing = ExceptionCase.objects.filter(fingerprint=fingerprint).first()
    if existing is not None and token:
        done = existing.proposals.order_by("-revision").first()
        if done is not None:
            return existing, done
    case, _ = case_open_or_update(
        kind=CaseKind.CREDIT_REQUEST,
        fingerprint=fingerprint,
        title=f"Credit memo for {invoice} ({invoice.customer.code})",
        actor=caller.actor,
        severity="medium",
        error_message=f"Asked on the invoice page by {caller.actor.label}: {reason.strip()}",
        source=invoice,
        details={"lines": {str(k): str(v) for k, v in (lines or {}).items()}},
        amount_at_stake=-preview.gross,
        currency_id=invoice.currency_id,
        legal_entity_id=invoice.legal_entity_id,
        customer_id=invoice.customer_id,
    )
    proposed: dict[str, object] = {"invoice_id": invoice.pk, "whole": lines is None}
    if lines is not None:
        proposed["lines"] = {str(k): str(v) for k, v in lines.items()}
    proposal = proposal_submit(
        case_id=case.pk,
        kind=ProposalKind.REVERSAL,
        target="invoice",
        target_id=str(invoice.pk),
        original={"invoice_id": invoice.pk, "credit_memo": None},
        proposed=proposed,
        amount=-preview.gross,
        reason_code=INVOICE_PAGE_REASON,
        comment=reason,
        caller=caller,
        version=None,
    )
    return case, proposal
