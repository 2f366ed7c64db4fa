"""Take the new version of a duplicate conflict (decision 51): a correction proposal under the
policy's four-eyes rule; once approved, metering supersedes the event that stood with the
version re-sent, and the case resolves when none of its re-sent events is left undecided.

An original already billed on a finalized invoice is refused, naming the invoice: a finalized
invoice is never changed, it is corrected by a credit memo or an adjustment.
"""

from __future__ import annotations

from typing import Any

from billing import selectors as billing_selectors
from core.actors import Actor
from core.errors import AppError, Conflict
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, CaseProposal, ExceptionCase
from exceptions.workbench.services import APPLIERS, Applier
from metering import selectors as metering_selectors
from metering import services as metering_services

TARGET = "usage_supersession"
#: Invoice statuses that are never changed: the original's correction goes through a document.
FINAL = ("finalized", "paid")


def _conflict_of(case: ExceptionCase, conflict_id: int) -> Any:
    if case.kind != CaseKind.DUPLICATE_CONFLICT:
        raise AppError(
            "Only a duplicate conflict has a new version to take.",
            code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE,
        )
    conflict = metering_selectors.case_conflicts(case_id=case.pk).filter(pk=conflict_id).first()
    if conflict is None:
        raise AppError(
            "conflict_id: choose one of the versions re-sent on this case.",
            code=ExceptionsErrorCode.INVALID_CORRECTION,
            extra={"field": "conflict_id"},
        )
    return conflict


def _refuse_if_billed(event_seq: int, event: str) -> None:
    """Refuse when the event is on a finalized (or paid) invoice, naming it."""
    billed = sorted(
        {
            str(line.invoice)
            for line in billing_selectors.event_invoice_lines(event_seq=event_seq)
            if line.invoice.status in FINAL
        }
    )
    if billed:
        raise Conflict(
            f"{event} is already billed on finalized invoice {', '.join(billed)}. A finalized "
            "invoice is never changed: correct it with a credit memo or an adjustment on that "
            "invoice (reverse it from its case or the invoice page) instead of taking the new "
            "version.",
            code=ExceptionsErrorCode.EVENT_BILLED,
            extra={"invoices": billed, "event_seq": event_seq},
        )


def proposal_sides(
    *, case: ExceptionCase, conflict_id: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the event that stands, the version re-sent) as the proposal's diff shows them; refused
    with the reason when the version cannot be taken."""
    conflict = _conflict_of(case, conflict_id)
    original = metering_selectors.current_event(source=conflict.source, event_id=conflict.event_id)
    if original is not None:
        _refuse_if_billed(original.seq, f"{conflict.source}:{conflict.event_id}")
    original, new = metering_services.supersession_check(conflict=conflict)
    proposed = {
        "source": new.source,
        "event_id": new.event_id,
        "customer_ref": new.customer_ref,
        "customer_id": new.customer_id,
        "metric_id": new.version.metric_id,
        "timestamp": new.timestamp.isoformat(),
        "value": None if new.value is None else str(new.value),
        "properties": new.properties,
    }
    standing = metering_selectors.event_fields(original)
    del standing["seq"]  # the diff shows what changes; the replacement gets a seq of its own
    return standing | {"conflict_id": conflict.pk}, proposed | {"conflict_id": conflict.pk}


def undecided(case: ExceptionCase) -> int:
    """How many events re-sent on the case have no version taken yet."""
    keys: set[tuple[str, str]] = set()
    taken: set[tuple[str, str]] = set()
    for c in metering_selectors.case_conflicts(case_id=case.pk):
        keys.add((c.source, c.event_id))
        if hasattr(c, "supersession"):  # selected with the conflict (None raises)
            taken.add((c.source, c.event_id))
    return len(keys - taken)


def _apply(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Supersede the standing event by the version re-sent; the case resolves once every event
    re-sent on it is decided."""
    case = ExceptionCase.objects.get(pk=proposal.case_id)
    conflict = _conflict_of(case, int(proposal.target_id))
    standing = metering_selectors.current_event(source=conflict.source, event_id=conflict.event_id)
    if standing is not None:  # billed since it was proposed? (metering refuses it too)
        _refuse_if_billed(standing.seq, f"{conflict.source}:{conflict.event_id}")
    done = metering_services.usage_event_supersede(
        conflict_id=conflict.pk,
        reason=f"{proposal.reason_code}: {proposal.comment} (case #{case.pk})",
        actor=actor,
        case_id=case.pk,
    )
    left = undecided(case)
    return left == 0, {
        "supersession_id": done.pk,
        "original_seq": done.original_seq,
        "replacement_seq": done.replacement_seq,
        "summary": f"New version of {done.source}:{done.event_id} taken: event "
        f"#{done.replacement_seq} supersedes #{done.original_seq}."
        + (f" {left} other re-sent event(s) of this case still undecided." if left else ""),
    }


APPLIERS[TARGET] = Applier(apply=_apply)
