"""Workbench reads: the queue, its counts, and everything a case page shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, QuerySet

from exceptions.models import (
    AuditEntry,
    CaseKind,
    CaseProposal,
    CaseStatus,
    ExceptionCase,
    ProposalStatus,
)
from exceptions.policies import needs_second_person, policy_for
from exceptions.workbench.services import Caller, can_retry

#: The fields of a rejected event a clerk may correct, in the order the form shows them.
EVENT_FIELDS = ("event_id", "source", "customer_ref", "metric", "timestamp", "value")


def queue_rows(qs: QuerySet[ExceptionCase]) -> QuerySet[ExceptionCase]:
    return qs.select_related("currency", "legal_entity", "customer", "assignee")


def queue_counts(qs: QuerySet[ExceptionCase]) -> dict[str, list[tuple[str, str, int]]]:
    """Per kind and per status, over the filtered list: (value, label, count), largest first."""
    kinds = dict(CaseKind.choices)
    statuses = dict(CaseStatus.choices)
    by_kind = qs.order_by().values("kind").annotate(n=Count("id")).order_by("-n")
    by_status = qs.order_by().values("status").annotate(n=Count("id")).order_by("-n")
    return {
        "kind": [(r["kind"], kinds.get(r["kind"], r["kind"]), r["n"]) for r in by_kind],
        "status": [
            (r["status"], statuses.get(r["status"], r["status"]), r["n"]) for r in by_status
        ],
    }


def case_get(*, pk: int) -> ExceptionCase:
    return ExceptionCase.objects.select_related(
        "currency", "legal_entity", "customer", "assignee"
    ).get(pk=pk)


def case_timeline(*, case: ExceptionCase) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(
        object_type=case._meta.label_lower, object_id=str(case.pk)
    ).order_by("seq")


def pending_proposal(*, case: ExceptionCase) -> CaseProposal | None:
    return case.proposals.filter(status=ProposalStatus.PENDING).first()


@dataclass(frozen=True)
class DiffRow:
    field: str
    before: Any
    after: Any

    @property
    def changed(self) -> bool:
        return self.before != self.after


def diff(original: dict[str, Any], proposed: dict[str, Any]) -> list[DiffRow]:
    keys = list(dict.fromkeys([*original.keys(), *proposed.keys()]))
    return [DiffRow(k, original.get(k), proposed.get(k)) for k in keys]


@dataclass
class Actions:
    """What this caller may do on this case now (the services check each again)."""

    names: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)  # why an action is not offered

    def __contains__(self, name: str) -> bool:
        return name in self.names


def case_actions(*, case: ExceptionCase, caller: Caller) -> Actions:
    acts = Actions()

    def offer(name: str, ok: bool = True, why: str = "") -> None:
        if not caller.may(name):
            acts.reasons[name] = "your role may not"
        elif ok:
            acts.names.add(name)
        elif why:
            acts.reasons[name] = why

    if not case.is_open:
        offer("reopen")
        offer("comment")
        return acts
    pending = pending_proposal(case=case)
    for name in ("assign", "comment", "dismiss"):
        offer(name)
    offer("retry", can_retry(case), "nothing to retry for this kind")
    offer("keep_original", case.kind == CaseKind.DUPLICATE_CONFLICT)
    offer("correct", case.kind == CaseKind.USAGE_REJECTED)
    offer("map_customer", case.kind == CaseKind.UNMAPPED_CUSTOMER)
    offer("reverse", case.source_type == "billing.invoice")
    if pending is not None:
        mine = pending.proposed_by_label == caller.actor.label
        offer("approve", not mine, "you proposed it: a different approver must approve")
        offer("reject", not mine, "you proposed it")
    return acts


def four_eyes_needed(*, case: ExceptionCase, amount: Any) -> bool:
    return needs_second_person(policy=policy_for(case.kind), amount=amount)


def case_trace(*, case: ExceptionCase) -> dict[str, Any]:
    """The source record and the product events behind the case, per kind (read-only)."""
    from billing import selectors as billing_selectors
    from metering import selectors as metering_selectors

    trace: dict[str, Any] = {}
    d = case.details or {}
    if case.kind == CaseKind.USAGE_REJECTED:
        rejected = metering_selectors.rejected_events().filter(case_id=case.pk)
        trace["rejected"] = list(rejected.order_by("status", "id")[:50])
        trace["rejected_total"] = rejected.count()
    elif case.kind == CaseKind.UNMAPPED_CUSTOMER:
        held = metering_selectors.held_events(
            source=d.get("source", ""), customer_ref=d.get("customer_ref", "")
        )
        trace["held"] = list(held[:50])
        trace["held_total"] = held.count()
    elif case.kind == CaseKind.DUPLICATE_CONFLICT:
        # metering has no selector for a case's conflicts yet; its model is read directly.
        from metering.models import DuplicateConflict

        trace["conflicts"] = list(DuplicateConflict.objects.filter(case_id=case.pk)[:50])
    if case.source_type == "billing.invoice" and case.source_id:
        invoice = billing_selectors.invoice_detail(pk=int(case.source_id))
        trace["invoice"] = invoice
        lines = list(invoice.lines.all())
        trace["lines"] = lines
        line_id = d.get("invoice_line_id")
        if line_id:
            line = billing_selectors.invoice_line(pk=int(line_id))
            trace["disputed_line"] = line
            trace["line_events"] = list(billing_selectors.line_events(line=line)[:50])
    return trace


#: What happened, in plain words, per kind (the failing system's own words follow it on the page).
EXPLANATIONS = {
    CaseKind.USAGE_REJECTED: "Usage events from a product were refused at intake, so they are not "
    "counted on any invoice. Correct an event below and re-submit it, or retry once the cause "
    "(e.g. a missing metric) is fixed.",
    CaseKind.UNMAPPED_CUSTOMER: "Usage arrived for an account we cannot match to a customer. The "
    "events are held, not lost. Map the account to a customer to release them into billing.",
    CaseKind.DUPLICATE_CONFLICT: "A product sent an event id again with different content. The "
    "first version was counted; decide whether it stands.",
    CaseKind.BILLING_RATING_FAILED: "A contract could not be priced for a period, so no invoice "
    "was drafted for it.",
    CaseKind.BILLING_RUN_FAILED: "A billing run stopped with an error. Retry runs it again; "
    "invoices already drafted are not drafted twice.",
    CaseKind.MISSING_GL_MAPPING: "A document could not be journalled because an account mapping "
    "is missing.",
    CaseKind.POSTING_FAILED: "The ERP refused a document.",
    CaseKind.POSTING_DEAD: "A document could not reach the ERP after every retry.",
    CaseKind.RECONCILIATION_MISMATCH: "The ERP's copy of a document differs from ours.",
    CaseKind.CUSTOMER_DISPUTE: "A customer disputes an invoice line. Review the events behind it; "
    "end with a credit memo, an adjustment or a reasoned rejection.",
}


def explanation(*, case: ExceptionCase) -> str:
    return EXPLANATIONS.get(case.kind, "A step failed and needs a person.")  # type: ignore[call-overload]
