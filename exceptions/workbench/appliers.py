"""What applies a decision in the app that owns the record, and what "retry now" does.

Each applier or retry handler calls one service of metering or billing (their
public `services` / `selectors` names only). Registered at import
(exceptions.apps imports this module when the workbench is ready).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing import selectors as billing_selectors
from billing import services as billing_services
from core.actors import Actor
from core.errors import AppError
from core.models import Customer
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, CaseProposal, ExceptionCase
from exceptions.workbench.services import APPLIERS, Applier, RetryOutcome, retry_handler
from metering import selectors as metering_selectors
from metering import services as metering_services

RESUBMIT_OPEN = "open"


def _open_rejected(case_id: int) -> Any:
    return metering_selectors.rejected_events().filter(case_id=case_id, status=RESUBMIT_OPEN)


def _apply_rejected_event(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Re-ingest the corrected event; the case resolves when none of its events is left open."""
    rejected = metering_selectors.rejected_event(pk=int(proposal.target_id))
    outcome = metering_services.rejected_event_resubmit(
        rejected=rejected, corrected=dict(proposal.proposed), actor=actor
    )
    if outcome["status"] == "rejected":
        return False, {
            "failed": True,
            "outcome": outcome["status"],
            "code": outcome.get("code", ""),
            "error": f"Re-ingest rejected the corrected event: {outcome.get('message', '')} "
            f"({outcome.get('code', '')})",
        }
    left = _open_rejected(proposal.case_id).count()
    return left == 0, {
        "outcome": outcome["status"],
        "event_id": proposal.proposed.get("event_id"),
        "source": proposal.proposed.get("source"),
        "summary": f"Corrected event re-ingested: {outcome['status']}."
        + (f" {left} other rejected event(s) of this case still open." if left else ""),
    }


def _apply_mapping(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Map the customer reference; metering releases the held events and resolves the case."""
    p = proposal.proposed
    customer = Customer.objects.filter(pk=p.get("customer_id")).first()
    if customer is None:
        raise AppError("That customer does not exist.", code=ExceptionsErrorCode.INVALID_CORRECTION)
    held = metering_selectors.held_events(
        source=p["source"], customer_ref=p["customer_ref"]
    ).count()
    mapping = metering_services.customer_mapping_create(
        source=p["source"], customer_ref=p["customer_ref"], customer=customer, actor=actor
    )
    return True, {
        "mapping_id": mapping.pk,
        "released": held,
        "summary": f"{p['source']}:{p['customer_ref']} mapped to {customer}; {held} held "
        "event(s) released.",
    }


def _apply_credit_memo(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Reverse a finalized invoice (whole, or amounts per line) by a credit memo."""
    p = proposal.proposed
    invoice = billing_selectors.invoice_detail(pk=int(proposal.target_id))
    lines = None if p.get("whole") else {int(k): Decimal(v) for k, v in p["lines"].items()}
    memo = billing_services.credit_memo_issue(
        invoice=invoice,
        reason=f"{proposal.reason_code}: {proposal.comment} (case #{proposal.case_id})",
        actor=actor,
        lines=lines,
    )
    return True, {
        "credit_memo_id": memo.pk,
        "credit_memo": str(memo),
        "total": memo.total,
        "currency": memo.currency_id,
        "summary": f"Credit memo {memo} issued for invoice {invoice}.",
    }


APPLIERS["rejected_event"] = Applier(apply=_apply_rejected_event)
APPLIERS["customer_mapping"] = Applier(apply=_apply_mapping)
APPLIERS["invoice"] = Applier(apply=_apply_credit_memo)


@retry_handler(CaseKind.USAGE_REJECTED)
def _retry_rejected(case: ExceptionCase, actor: Actor) -> RetryOutcome:
    """Send the case's rejected events again as received (e.g. after the metric was added)."""
    accepted = still = 0
    for rejected in _open_rejected(case.pk).order_by("id")[:1000]:
        if not isinstance(rejected.raw, dict):
            still += 1
            continue
        with_transaction = metering_services.rejected_event_resubmit(
            rejected=rejected, corrected=dict(rejected.raw), actor=actor
        )
        if with_transaction["status"] == "rejected":
            still += 1
        else:
            accepted += 1
    left = _open_rejected(case.pk).count()
    return RetryOutcome(
        resolved=left == 0,
        message=f"Re-sent as received: {accepted} went through, {still} rejected again"
        + (f"; {left} still open." if left else "."),
    )


@retry_handler(CaseKind.UNMAPPED_CUSTOMER)
def _retry_unmapped(case: ExceptionCase, actor: Actor) -> RetryOutcome:
    """If someone has mapped the reference meanwhile, release what is held for it."""
    source, ref = case.details.get("source", ""), case.details.get("customer_ref", "")
    mapping = metering_selectors.mappings().filter(source=source, customer_ref=ref).first()
    if mapping is None:
        return RetryOutcome(False, f"{source}:{ref} is still not mapped to a customer.")
    released = metering_services.held_events_release(mapping=mapping, actor=actor)
    return RetryOutcome(True, f"{released} held event(s) released to {mapping.customer}.")


@retry_handler(CaseKind.BILLING_RUN_FAILED)
def _retry_run(case: ExceptionCase, actor: Actor) -> RetryOutcome:
    try:
        run = billing_services.billing_run_retry(run_id=int(case.source_id), actor=actor)
    except Exception as exc:  # noqa: BLE001 - the run's own failure is recorded on the run and shown here
        return RetryOutcome(False, f"The billing run failed again: {exc}")
    return RetryOutcome(
        True, f"Billing run {run.label} finished (attempt {run.attempt}, #{run.pk})."
    )
