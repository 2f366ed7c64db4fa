"""Workbench reads: the queue, its counts, and everything a case page shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from exceptions.models import (
    OPEN_STATUSES,
    AuditEntry,
    CaseCount,
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


#: The columns the queue's table shows (the list reads only these).
LIST_COLUMNS = (
    "id",
    "kind",
    "severity",
    "status",
    "title",
    "occurrence_count",
    "amount_at_stake",
    "due_at",
    "first_seen_at",
    "last_seen_at",
    "legal_entity__code",
    "customer__code",
    "assignee__username",
    "currency__code",
    "currency__minor_units",
)


@dataclass(frozen=True)
class QueueRow:
    """One line of the queue, ready to print (the page formats nothing per row)."""

    id: int
    kind: str
    kind_label: str
    severity: str
    severity_label: str
    status_label: str
    is_open: bool
    title: str
    occurrences: int
    entity: str
    customer: str
    amount: str
    assignee: str
    age: str
    due: str
    past_due: bool


def queue_page_rows(cases: Iterable[ExceptionCase], *, now: datetime) -> list[QueueRow]:
    from django.utils.timezone import localtime

    from exceptions.templatetags.queue import age_text, money_text

    rows = []
    for c in cases:
        rows.append(
            QueueRow(
                id=c.pk,
                kind=c.kind,
                kind_label=c.kind_label,
                severity=c.severity,
                severity_label=c.get_severity_display(),
                status_label=c.get_status_display(),
                is_open=c.is_open,
                title=c.title,
                occurrences=c.occurrence_count,
                entity=c.legal_entity.code if c.legal_entity is not None else "",
                customer=c.customer.code if c.customer is not None else "",
                amount=money_text(c.amount_at_stake, c.currency),
                assignee=c.assignee.username if c.assignee is not None else "",
                age=age_text(c.first_seen_at, now=now),
                due=localtime(c.due_at).strftime("%Y-%m-%d %H:%M") if c.due_at else "",
                past_due=c.is_past_due(now),
            )
        )
    return rows


#: Above this many matches the filtered list says "more than 10,000" instead of counting them all
#: (narrow the filters, or export the CSV, which has every row).
COUNT_CAP = 10_000


@dataclass(frozen=True)
class QueueCounts:
    """The whole queue per kind and per status (from the trigger-kept CaseCount table), and
    how many cases the filtered list has (exact up to COUNT_CAP)."""

    kind: list[tuple[str, str, int]]
    status: list[tuple[str, str, int]]
    total: int
    capped: bool


def queue_counts(
    qs: QuerySet[ExceptionCase], *, statuses: list[str] | None, kind: str | None
) -> QueueCounts:
    """`statuses`/`kind`: the list's filters when it has no others (its total is then read from
    the counts too); None when other filters apply (the total is counted, up to COUNT_CAP)."""
    kinds = dict(CaseKind.choices)
    labels = dict(CaseStatus.choices)
    open_list = [str(st) for st in OPEN_STATUSES]
    rows = list(CaseCount.objects.filter(n__gt=0).values_list("kind", "status", "n"))
    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for k, st, n in rows:
        by_status[st] = by_status.get(st, 0) + n
        if st in open_list:
            by_kind[k] = by_kind.get(k, 0) + n

    def listed(counts: dict[str, int], names: dict[str, str]) -> list[tuple[str, str, int]]:
        return [(v, names.get(v, v), n) for v, n in sorted(counts.items(), key=lambda x: -x[1])]

    if statuses is not None:
        total = sum(n for k, st, n in rows if st in statuses and (not kind or k == kind))
        capped = False
    else:
        total = qs.order_by()[: COUNT_CAP + 1].count()
        capped = total > COUNT_CAP
        total = min(total, COUNT_CAP)
    return QueueCounts(
        kind=listed(by_kind, kinds), status=listed(by_status, labels), total=total, capped=capped
    )


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
        return bool(self.before != self.after)


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
    if case.kind == CaseKind.DUPLICATE_CONFLICT:
        from exceptions.workbench.supersede import undecided

        offer("take_new_version", undecided(case) > 0, "every version re-sent is decided")
    offer("correct", case.kind == CaseKind.USAGE_REJECTED)
    offer("map_customer", case.kind == CaseKind.UNMAPPED_CUSTOMER)
    offer("reverse", case.source_type == "billing.invoice")
    if case.kind in (CaseKind.POSTING_FAILED, CaseKind.POSTING_DEAD):
        from erp_sync.services.corrections import posting_date_of
        from exceptions.workbench import erp

        posting = erp.case_posting(case)
        offer(
            "correct_date",
            posting is not None
            and posting.status in ("failed", "dead", "held")
            and posting_date_of(posting) is not None,
            "the posting is not failed, dead or held, or carries no date",
        )
    offer("map_account", case.kind == CaseKind.MISSING_GL_MAPPING)
    if case.kind == CaseKind.CUSTOMER_DISPUTE:
        from exceptions.workbench.disputes import dispute_adjustments

        offer(
            "settle_adjustment",
            bool(dispute_adjustments(case=case)),
            "no adjustment has been issued against this invoice yet",
        )
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
        trace["conflicts"] = list(metering_selectors.case_conflicts(case_id=case.pk)[:50])
    if case.kind in (CaseKind.POSTING_FAILED, CaseKind.POSTING_DEAD):
        trace.update(posting_trace(case=case))
    elif case.kind == CaseKind.MISSING_GL_MAPPING:
        from erp_sync.models import Posting

        waiting = d.get("waiting_external_ids") or []
        trace["waiting"] = list(
            Posting.objects.filter(
                connection_id=d.get("connection_id"), external_id__in=waiting[:200]
            ).order_by("id")[:50]
        )
    elif case.kind == CaseKind.RECONCILIATION_MISMATCH:
        trace["sides"] = mismatch_sides(d)
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
    if case.kind == CaseKind.CUSTOMER_DISPUTE:
        from exceptions.workbench.disputes import dispute_adjustments

        trace["adjustments"] = dispute_adjustments(case=case)
    return trace


#: What happened, in plain words, per kind (the failing system's own words follow it on the page).
EXPLANATIONS: dict[str, str] = {
    CaseKind.USAGE_REJECTED: "Usage events from a product were refused at intake, so they are not "
    "counted on any invoice. Correct an event below and re-submit it, or retry once the cause "
    "(e.g. a missing metric) is fixed.",
    CaseKind.UNMAPPED_CUSTOMER: "Usage arrived for an account we cannot match to a customer. The "
    "events are held, not lost. Map the account to a customer to release them into billing.",
    CaseKind.DUPLICATE_CONFLICT: "A product sent an event id again with different content. The "
    "first version was counted; decide whether it stands: keep the original, or take the new "
    "version, which then supersedes it on every invoice not finalized yet (an event already on "
    "a finalized invoice is corrected by a credit memo or an adjustment instead).",
    CaseKind.BILLING_RATING_FAILED: "A contract could not be priced for a period, so no invoice "
    "was drafted for it.",
    CaseKind.BILLING_RUN_FAILED: "A billing run stopped with an error. Retry runs the month "
    "again as a new attempt; invoices already drafted are not drafted twice.",
    CaseKind.MISSING_GL_MAPPING: "Documents wait (held, not lost) because one of our ledger "
    "accounts has no ERP account on this connection. Map it below: the held postings go to the "
    "outbox and the case resolves.",
    CaseKind.POSTING_FAILED: "The ERP refused a document, in its own words below. Fix the cause "
    "and retry, or, when its date falls in a closed period, correct the posting date into an "
    "open one: once approved it is sent again.",
    CaseKind.POSTING_DEAD: "A document could not reach the ERP after every retry. Retry now "
    "sends it again with a fresh retry budget (it is looked up in the ERP first, never posted "
    "twice).",
    CaseKind.RECONCILIATION_MISMATCH: "The ERP's copy of a document differs from ours. Both "
    "sides are shown below with the differing fields marked.",
    CaseKind.CUSTOMER_DISPUTE: "A customer disputes an invoice line. Review the events behind it; "
    "end with a credit memo, an adjustment or a reasoned rejection.",
}


def explanation(*, case: ExceptionCase) -> str:
    return EXPLANATIONS.get(case.kind, "A step failed and needs a person.")


def posting_trace(*, case: ExceptionCase) -> dict[str, Any]:
    """A posting case's posting, its date as the ERP would book it, and every attempt (request
    and response, as the outbox recorded them), newest first."""
    from erp_sync.services.corrections import posting_date_of
    from exceptions.workbench import erp

    posting = erp.case_posting(case)
    if posting is None:
        return {}
    day = posting_date_of(posting)
    return {
        "posting": posting,
        "posting_date": day.isoformat() if day else "",
        "attempts": list(posting.attempt_rows.order_by("-number")[:20]),
    }


@dataclass(frozen=True)
class SideRow:
    """One field of a reconciled document: ours, the ERP's, and whether they differ."""

    field: str
    ours: Any
    theirs: Any

    @property
    def differs(self) -> bool:
        return bool(self.ours != self.theirs)


def mismatch_sides(details: dict[str, Any]) -> list[SideRow]:
    """A reconciliation mismatch's two sides, field by field (reconciliation stores `ours` and
    `theirs` as the document's fields, as one amount, or None for a side that has nothing)."""
    ours, theirs = details.get("ours"), details.get("theirs")
    if isinstance(ours, dict) or isinstance(theirs, dict):
        a = ours if isinstance(ours, dict) else {}
        b = theirs if isinstance(theirs, dict) else {}
        keys = list(dict.fromkeys([*a.keys(), *b.keys()]))
        return [
            SideRow(
                k,
                a.get(k, "(none)" if ours is None else ""),
                b.get(k, "(none)" if theirs is None else ""),
            )
            for k in keys
        ]
    label = str(details.get("what", "amount"))
    return [
        SideRow(
            label,
            "(none)" if ours is None else ours,
            "(none)" if theirs is None else theirs,
        )
    ]
