"""Workbench writes: what finance does to a case (assign, comment, correct, approve, reverse,
retry, dismiss, reopen).

This is the workbench layer of `exceptions`: it calls metering's and billing's
services to apply a decision (re-ingest a corrected event, map a customer and
release held events, issue a credit memo). The rules it enforces on the
server, whatever the page shows:

- the caller's role must allow the action (ACTION_ROLES);
- a form carries the case's `version`: one read before another user's change
  is refused (`case_stale`), so nothing is applied twice;
- a correction or reversal above the kind's policy amount takes effect only
  when a different approver approves it (`self_approval` otherwise; the
  database refuses approver == proposer as well);
- every action writes its audit entry (before, after, reason) against the case,
  in the transaction of the change.

An approval is applied in two steps: the approval itself (under the case's row
lock: only one approval of a proposal ever commits), then the downstream write
in its own transaction, which takes its own locks in the documented order
(core/locks.py: the mapping lock before any case row). If that write fails, the
proposal is marked failed with the error and the case goes back to work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import roles
from core.actors import Actor
from core.errors import AppError, Conflict, NotFound, PermissionDenied
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import (
    OPEN_STATUSES,
    CaseComment,
    CaseKind,
    CaseProposal,
    CaseStatus,
    ExceptionCase,
    ExceptionPolicy,
    ProposalKind,
    ProposalStatus,
)
from exceptions.policies import DEFAULTS, POLICY_FIELDS, needs_second_person, policy_for
from exceptions.services import _json_safe, audit_record, case_close

WORKERS = frozenset({roles.FINANCE_CLERK, roles.FINANCE_APPROVER})
APPROVERS = frozenset({roles.FINANCE_APPROVER})
#: Who may take each action (checked here, for pages and API alike).
ACTION_ROLES: dict[str, frozenset[str]] = {
    "assign": WORKERS,
    "comment": WORKERS,
    "correct": WORKERS,
    "map_customer": WORKERS,
    "reverse": WORKERS,
    "correct_date": WORKERS,
    "map_account": WORKERS,
    "settle_adjustment": WORKERS,
    "keep_original": WORKERS,
    "take_new_version": WORKERS,
    "retry": WORKERS,
    "dismiss": WORKERS,
    "reopen": WORKERS,
    "approve": APPROVERS,
    "reject": APPROVERS,
    "policy_edit": APPROVERS,
}

#: Reason codes a correction, a reversal or a dismissal must carry.
CORRECTION_REASONS = {
    "source_data_error": "The producer sent wrong data",
    "wrong_metric": "Wrong metric",
    "wrong_customer": "Wrong customer or account",
    "wrong_time": "Wrong timestamp",
    "wrong_value": "Wrong quantity or value",
    "customer_onboarding": "Customer not yet mapped",
    "other": "Other (see comment)",
}
REVERSAL_REASONS = {
    "billing_error": "Billed in error",
    "customer_dispute": "Customer dispute upheld",
    "duplicate_invoice": "Duplicate invoice",
    "goodwill": "Goodwill credit",
    "invoice_page": "Asked on the invoice page (reason in the comment)",
}
DISMISS_REASONS = {
    "expected": "Expected behaviour, nothing to do",
    "duplicate_case": "Duplicate of another case",
    "test_data": "Test or demo data",
    "fixed_at_source": "Fixed at the source system",
    "not_actionable": "Not actionable",
    "dispute_rejected": "Dispute rejected: the invoice is right",
}


@dataclass(frozen=True)
class Caller:
    """Who acts and with which roles (a user's groups; an `admin` API key acts as a worker
    and an approver, under the same four-eyes rule: it never approves its own proposal)."""

    actor: Actor
    roles: frozenset[str]
    user: AbstractBaseUser | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Caller:
        return cls(actor=Actor.for_user(user), roles=frozenset(roles.user_roles(user)), user=user)

    @classmethod
    def for_api_key(cls, api_key: Any) -> Caller:
        return cls(actor=Actor.for_api_key(api_key), roles=WORKERS | APPROVERS)

    def may(self, action: str) -> bool:
        return bool(self.roles & ACTION_ROLES[action])


def _require(caller: Caller, action: str) -> None:
    if not caller.may(action):
        raise PermissionDenied(
            f"Your role may not {action.replace('_', ' ')} a case.",
            code=ExceptionsErrorCode.ACTION_NOT_ALLOWED,
            extra={"action": action},
        )


def _snapshot(case: ExceptionCase) -> dict[str, Any]:
    return {
        "status": case.status,
        "assignee_id": case.assignee_id,
        "severity": case.severity,
        "version": case.version,
    }


def _lock(*, case_id: int, version: int | None) -> ExceptionCase:
    """The case, row-locked; refused when the caller read an older version of it."""
    case = ExceptionCase.objects.select_for_update().filter(pk=case_id).first()
    if case is None:
        raise NotFound(f"There is no case #{case_id}.", code="not_found")
    if version is not None and case.version != version:
        raise Conflict(
            f"Case #{case.pk} was changed by someone else while you had it open (you saw version "
            f"{version}, it is now at {case.version}). Nothing was applied; reload the case to "
            "see what changed.",
            code=ExceptionsErrorCode.CASE_STALE,
            extra={"case_id": case.pk, "your_version": version, "current_version": case.version},
        )
    return case


def _bump(case: ExceptionCase, *fields: str) -> None:
    case.version += 1
    case.save(update_fields=["version", *fields])


def _need_open(case: ExceptionCase) -> None:
    if case.status not in OPEN_STATUSES:
        raise Conflict(
            f"Case #{case.pk} is {case.get_status_display().lower()}; reopen it first.",
            code=ExceptionsErrorCode.CASE_NOT_OPEN,
        )


def _reason(code: str, comment: str, allowed: dict[str, str]) -> None:
    if not code or not comment.strip():
        raise AppError(
            "A reason code and a comment are required.", code=ExceptionsErrorCode.REASON_REQUIRED
        )
    if code not in allowed:
        raise AppError(
            f"'{code}' is not a reason code here; use one of {', '.join(allowed)}.",
            code=ExceptionsErrorCode.REASON_UNKNOWN,
        )


# --------------------------------------------------------------------------- simple actions


def case_assign(
    *, case_id: int, assignee: User | None, caller: Caller, version: int | None
) -> ExceptionCase:
    """Give the case to someone (or to nobody); an open case assigned is in progress."""
    _require(caller, "assign")
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        before = _snapshot(case)
        case.assignee = assignee
        if assignee is not None and case.status == CaseStatus.OPEN:
            case.status = CaseStatus.IN_PROGRESS
        _bump(case, "assignee", "status")
        audit_record(
            actor=caller.actor,
            action="case.assign",
            obj=case,
            before=before,
            after=_snapshot(case),
            reason=f"assigned to {assignee.get_username() if assignee else 'nobody'}",
        )
    return case


def case_comment(*, case_id: int, body: str, caller: Caller) -> CaseComment:
    """Add a comment (comments never conflict: no version needed)."""
    _require(caller, "comment")
    if not body.strip():
        raise AppError("A comment needs some text.", code=ExceptionsErrorCode.REASON_REQUIRED)
    with transaction.atomic():
        case = _lock(case_id=case_id, version=None)
        comment = CaseComment.objects.create(
            case=case,
            author_label=caller.actor.label,
            author_id=caller.actor.user_id,
            body=body.strip(),
            at=timezone.now(),
        )
        audit_record(
            actor=caller.actor,
            action="case.comment",
            obj=case,
            after={"comment_id": comment.pk},
            reason=comment.body[:2000],
        )
    return comment


def case_dismiss(
    *, case_id: int, reason_code: str, comment: str, caller: Caller, version: int | None
) -> ExceptionCase:
    _require(caller, "dismiss")
    _reason(reason_code, comment, DISMISS_REASONS)
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        _withdraw_pending(case, caller=caller, why="case dismissed")
        return case_close(
            case=case,
            actor=caller.actor,
            status=CaseStatus.DISMISSED,
            resolution=f"{DISMISS_REASONS[reason_code]}: {comment.strip()}",
            resolution_code=reason_code,
        )


def case_reopen(*, case_id: int, reason: str, caller: Caller, version: int | None) -> ExceptionCase:
    _require(caller, "reopen")
    if not reason.strip():
        raise AppError("Say why the case is reopened.", code=ExceptionsErrorCode.REASON_REQUIRED)
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        if case.status in OPEN_STATUSES:
            raise Conflict(f"Case #{case.pk} is already open.", code=ExceptionsErrorCode.CASE_OPEN)
        before = _snapshot(case) | {"resolution": case.resolution}
        case.status, case.resolved_at, case.resolution, case.resolution_code = (
            CaseStatus.OPEN,
            None,
            "",
            "",
        )
        try:
            with transaction.atomic():
                _bump(case, "status", "resolved_at", "resolution", "resolution_code")
        except IntegrityError:
            raise Conflict(
                "The same failure has a newer open case; work that one instead.",
                code=ExceptionsErrorCode.CASE_OPEN,
            ) from None
        audit_record(
            actor=caller.actor,
            action="case.reopen",
            obj=case,
            before=before,
            after=_snapshot(case),
            reason=reason.strip(),
        )
    return case


def case_keep_original(
    *, case_id: int, comment: str, caller: Caller, version: int | None
) -> ExceptionCase:
    """A duplicate conflict: the event first received stands; the re-sent versions are not used."""
    _require(caller, "keep_original")
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        if case.kind != CaseKind.DUPLICATE_CONFLICT:
            raise AppError(
                "Only a duplicate conflict has an original to keep.",
                code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE,
            )
        _withdraw_pending(case, caller=caller, why="original kept")
        return case_close(
            case=case,
            actor=caller.actor,
            status=CaseStatus.RESOLVED,
            resolution="Original kept; the re-sent versions are not used."
            + (f" {comment.strip()}" if comment.strip() else ""),
            resolution_code="keep_original",
        )


# --------------------------------------------------------------------------- bulk


@dataclass
class BulkResult:
    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def _bulk(case_ids: Iterable[int], one: Callable[[int], object]) -> BulkResult:
    result = BulkResult()
    for case_id in sorted(set(case_ids)):  # id order: two bulk actions never deadlock
        try:
            one(case_id)
            result.done.append(case_id)
        except AppError as exc:
            result.skipped[case_id] = exc.message
    return result


def cases_bulk_assign(
    *, case_ids: Iterable[int], assignee: User | None, caller: Caller
) -> BulkResult:
    _require(caller, "assign")
    return _bulk(
        case_ids,
        lambda cid: case_assign(case_id=cid, assignee=assignee, caller=caller, version=None),
    )


def cases_bulk_dismiss(
    *, case_ids: Iterable[int], reason_code: str, comment: str, caller: Caller
) -> BulkResult:
    _require(caller, "dismiss")
    _reason(reason_code, comment, DISMISS_REASONS)
    return _bulk(
        case_ids,
        lambda cid: case_dismiss(
            case_id=cid, reason_code=reason_code, comment=comment, caller=caller, version=None
        ),
    )


def cases_bulk_retry(*, case_ids: Iterable[int], caller: Caller) -> BulkResult:
    _require(caller, "retry")
    return _bulk(case_ids, lambda cid: case_retry(case_id=cid, caller=caller, version=None))


# --------------------------------------------------------------------------- retry


@dataclass(frozen=True)
class RetryOutcome:
    resolved: bool
    message: str


RetryHandler = Callable[[ExceptionCase, Actor], RetryOutcome]
#: kind -> what "retry now" does for it. The ERP sync registers its posting kinds here.
RETRY_HANDLERS: dict[str, RetryHandler] = {}


def retry_handler(kind: str) -> Callable[[RetryHandler], RetryHandler]:
    def register(fn: RetryHandler) -> RetryHandler:
        RETRY_HANDLERS[kind] = fn
        return fn

    return register


def can_retry(case: ExceptionCase) -> bool:
    return case.kind in RETRY_HANDLERS


def case_retry(*, case_id: int, caller: Caller | None, version: int | None) -> RetryOutcome:
    """Run the failing step again now. `caller=None` is the automatic retry task."""
    actor = caller.actor if caller else Actor.for_task("exceptions.cases_auto_retry")
    if caller is not None:
        _require(caller, "retry")
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        handler = RETRY_HANDLERS.get(case.kind)
        if handler is None:
            raise AppError(
                f"A {case.kind} case has nothing to retry; correct or dismiss it.",
                code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE,
            )
        _bump(case)
    # The downstream step runs outside the case lock: it takes its own locks in order.
    outcome = handler(case, actor)
    with transaction.atomic():
        case = _lock(case_id=case_id, version=None)
        policy = policy_for(case.kind)
        case.retry_count += 1
        case.next_retry_at = (
            timezone.now() + timedelta(minutes=policy.retry_every_minutes)
            if policy.auto_retry
            and case.retry_count < policy.max_auto_retries
            and case.status in OPEN_STATUSES
            and not outcome.resolved
            else None
        )
        _bump(case, "retry_count", "next_retry_at")
        audit_record(
            actor=actor,
            action="case.retry",
            obj=case,
            after={"resolved": outcome.resolved, "retry_count": case.retry_count},
            reason=outcome.message[:2000],
        )
        if outcome.resolved and case.status in OPEN_STATUSES:
            case_close(
                case=case,
                actor=actor,
                status=CaseStatus.RESOLVED,
                resolution=outcome.message,
                resolution_code="retried",
            )
    return outcome


def cases_auto_retry(*, now: datetime | None = None, limit: int = 200) -> int:
    """Retry the open cases whose policy retries them and whose next retry is due. Safe twice."""
    now = now or timezone.now()
    due = list(
        ExceptionCase.objects.filter(
            status__in=OPEN_STATUSES, next_retry_at__lte=now, kind__in=list(RETRY_HANDLERS)
        )
        .order_by("next_retry_at")
        .values_list("pk", flat=True)[:limit]
    )
    n = 0
    for case_id in due:
        try:
            case_retry(case_id=case_id, caller=None, version=None)
            n += 1
        except AppError:
            continue
    return n


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class Applier:
    """Applies an approved proposal of one target; returns (resolves the case?, result)."""

    apply: Callable[[CaseProposal, Actor], tuple[bool, dict[str, Any]]]


APPLIERS: dict[str, Applier] = {}


def _withdraw_pending(case: ExceptionCase, *, caller: Caller, why: str) -> None:
    for p in CaseProposal.objects.select_for_update().filter(
        case=case, status=ProposalStatus.PENDING
    ):
        p.status = ProposalStatus.WITHDRAWN
        p.result = {"withdrawn": why}
        p.save(update_fields=["status", "result"])
        audit_record(
            actor=caller.actor,
            action="proposal.withdraw",
            obj=case,
            before={"proposal_id": p.pk, "status": ProposalStatus.PENDING},
            after={"proposal_id": p.pk, "status": ProposalStatus.WITHDRAWN},
            reason=why,
        )


def proposal_submit(
    *,
    case_id: int,
    kind: str,
    target: str,
    target_id: str,
    original: dict[str, Any],
    proposed: dict[str, Any],
    amount: Decimal | None,
    reason_code: str,
    comment: str,
    caller: Caller,
    version: int | None,
) -> CaseProposal:
    """Propose a correction or reversal. Above the policy amount it waits for an approver;
    otherwise it is applied now. A new proposal replaces a pending or failed one (and so needs
    its own approval: an edit after approval goes back for approval)."""
    action = "reverse" if kind == ProposalKind.REVERSAL else "correct"
    if target == "customer_mapping":
        action = "map_customer"
    elif target == "usage_supersession":
        action = "take_new_version"
    _require(caller, action)
    _reason(reason_code, comment, REVERSAL_REASONS if action == "reverse" else CORRECTION_REASONS)
    if target not in APPLIERS:
        raise AppError(
            f"Nothing applies a {target}.", code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE
        )
    if proposed == original:
        raise AppError(
            "The correction changes nothing; edit at least one field.",
            code=ExceptionsErrorCode.NOTHING_CHANGED,
        )
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        _need_open(case)
        previous = (
            CaseProposal.objects.filter(case=case, target=target, target_id=target_id)
            .order_by("-revision")
            .first()
        )
        _withdraw_pending(case, caller=caller, why="replaced by a new proposal")
        four_eyes = needs_second_person(policy=policy_for(case.kind), amount=amount)
        proposal = CaseProposal.objects.create(
            case=case,
            kind=kind,
            target=target,
            target_id=target_id,
            original=_json_safe(original),
            proposed=_json_safe(proposed),
            amount=amount,
            reason_code=reason_code,
            comment=comment.strip(),
            revision=(previous.revision + 1) if previous else 1,
            proposed_by_label=caller.actor.label,
            proposed_by_id=caller.actor.user_id,
            proposed_by_key_id=caller.actor.api_key_id,
            proposed_at=timezone.now(),
            four_eyes=four_eyes,
        )
        before = _snapshot(case)
        case.status = CaseStatus.AWAITING_APPROVAL if four_eyes else CaseStatus.IN_PROGRESS
        _bump(case, "status")
        audit_record(
            actor=caller.actor,
            action=f"proposal.{'submit' if four_eyes else 'submit_and_apply'}",
            obj=case,
            before=before | {"original": proposal.original},
            after=_snapshot(case)
            | {
                "proposal_id": proposal.pk,
                "kind": kind,
                "target": target,
                "target_id": target_id,
                "proposed": proposal.proposed,
                "amount": amount,
                "four_eyes": four_eyes,
                "revision": proposal.revision,
            },
            reason=f"{reason_code}: {comment.strip()}",
        )
    if not four_eyes:
        _apply(proposal_id=proposal.pk, actor=caller.actor)
        proposal.refresh_from_db()
    return proposal


def _pending(case: ExceptionCase) -> CaseProposal:
    proposal = (
        CaseProposal.objects.select_for_update()
        .filter(case=case, status=ProposalStatus.PENDING)
        .first()
    )
    if proposal is None:
        raise Conflict(
            f"Case #{case.pk} has no proposal waiting for approval.",
            code=ExceptionsErrorCode.NO_PENDING_PROPOSAL,
        )
    return proposal


def _is_proposer(proposal: CaseProposal, actor: Actor) -> bool:
    if proposal.proposed_by_id is not None and proposal.proposed_by_id == actor.user_id:
        return True
    if proposal.proposed_by_key_id is not None and proposal.proposed_by_key_id == actor.api_key_id:
        return True
    return proposal.proposed_by_label == actor.label


def proposal_approve(
    *, case_id: int, caller: Caller, version: int | None, comment: str = ""
) -> CaseProposal:
    """A different approver approves the pending proposal; it is then applied.

    The proposer is told so first (whatever their role): they may never approve it."""
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        proposal = _pending(case)
        if _is_proposer(proposal, caller.actor):
            raise PermissionDenied(
                "You proposed this change; a different approver must approve it (four eyes).",
                code=ExceptionsErrorCode.SELF_APPROVAL,
            )
        _require(caller, "approve")
        proposal.status = ProposalStatus.APPROVED
        proposal.approved_by_label = caller.actor.label
        proposal.approved_by_id = caller.actor.user_id
        proposal.approved_by_key_id = caller.actor.api_key_id
        proposal.approved_at = timezone.now()
        proposal.save(
            update_fields=[
                "status",
                "approved_by_label",
                "approved_by",
                "approved_by_key",
                "approved_at",
            ]
        )
        _decided(case, proposal, caller=caller, action="proposal.approve", reason=comment)
    _apply(proposal_id=proposal.pk, actor=caller.actor)
    proposal.refresh_from_db()
    return proposal


def proposal_reject(
    *, case_id: int, comment: str, caller: Caller, version: int | None
) -> CaseProposal:
    _require(caller, "reject")
    if not comment.strip():
        raise AppError(
            "Say why the proposal is rejected.", code=ExceptionsErrorCode.REASON_REQUIRED
        )
    with transaction.atomic():
        case = _lock(case_id=case_id, version=version)
        proposal = _pending(case)
        proposal.status = ProposalStatus.REJECTED
        proposal.result = {"rejected": comment.strip()}
        proposal.save(update_fields=["status", "result"])
        _decided(case, proposal, caller=caller, action="proposal.reject", reason=comment)
    return proposal


def _decided(
    case: ExceptionCase, proposal: CaseProposal, *, caller: Caller, action: str, reason: str
) -> None:
    """An approver decided on the pending proposal: the case is back in progress, audited."""
    before = _snapshot(case)
    case.status = CaseStatus.IN_PROGRESS
    _bump(case, "status")
    audit_record(
        actor=caller.actor,
        action=action,
        obj=case,
        before=before | {"proposal_id": proposal.pk, "status": ProposalStatus.PENDING},
        after=_snapshot(case) | {"proposal_id": proposal.pk, "status": proposal.status},
        reason=reason.strip(),
    )


def _apply(*, proposal_id: int, actor: Actor) -> None:
    """Apply an approved (or below-threshold) proposal, then record its result on the case."""
    proposal = CaseProposal.objects.get(pk=proposal_id)
    applier = APPLIERS[proposal.target]
    try:
        with transaction.atomic():
            resolves, result = applier.apply(proposal, actor)
    except AppError as exc:
        resolves, result, failed = False, {"error": exc.message, "code": exc.code}, True
    else:
        failed = bool(result.get("failed"))
    with transaction.atomic():
        case = _lock(case_id=proposal.case_id, version=None)
        proposal = CaseProposal.objects.select_for_update().get(pk=proposal_id)
        proposal.status = ProposalStatus.FAILED if failed else ProposalStatus.APPLIED
        proposal.result = _json_safe(result)
        proposal.save(update_fields=["status", "result"])
        before = _snapshot(case)
        if case.status in OPEN_STATUSES:
            case.status = CaseStatus.IN_PROGRESS
            _bump(case, "status")
        audit_record(
            actor=actor,
            action="proposal.apply_failed" if failed else "proposal.apply",
            obj=case,
            before=before | {"proposal_id": proposal.pk},
            after=_snapshot(case) | {"proposal_id": proposal.pk, "result": proposal.result},
            reason=str(result.get("error") or result.get("summary") or "")[:2000],
        )
        if resolves and not failed and case.status in OPEN_STATUSES:
            case_close(
                case=case,
                actor=actor,
                status=CaseStatus.RESOLVED,
                resolution=str(result.get("summary", "Correction applied.")),
                resolution_code=proposal.kind,
            )


# --------------------------------------------------------------------------- policies


def _policy_values(policy: ExceptionPolicy) -> dict[str, Any]:
    return {f: getattr(policy, f) for f in POLICY_FIELDS}


def policy_update(*, kind: str, values: dict[str, Any], caller: Caller) -> ExceptionPolicy:
    """An approver sets a kind's policy (created on first edit); audited field by field."""
    _require(caller, "policy_edit")
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise AppError(
            f"Unknown policy fields: {', '.join(sorted(unknown))}.",
            code=ExceptionsErrorCode.POLICY_INVALID,
        )
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        policy = ExceptionPolicy.objects.select_for_update().filter(kind=kind).first()
        if policy is None:
            policy = ExceptionPolicy(kind=kind, **DEFAULTS)
        before = _policy_values(policy)
        for name, value in values.items():
            setattr(policy, name, value)
        policy.updated_by_id = caller.actor.user_id
        try:
            policy.full_clean()
            if (
                policy.high_amount is not None
                and policy.critical_amount is not None
                and policy.critical_amount < policy.high_amount
            ):
                raise ValidationError("The critical amount must be at least the high amount.")
        except ValidationError as exc:
            raise AppError(
                "; ".join(exc.messages), code=ExceptionsErrorCode.POLICY_INVALID
            ) from None
        policy.save()
        after = _policy_values(policy)
        changed = sorted(k for k in after if before[k] != after[k])
        audit_record(
            actor=caller.actor,
            action="policy.change",
            obj=policy,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
    return policy


def parse_decimal(raw: str, *, label: str) -> Decimal | None:
    raw = (raw or "").strip().replace(",", "")
    if not raw:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise AppError(
            f"{label}: '{raw}' is not a number.", code=ExceptionsErrorCode.POLICY_INVALID
        ) from None


#: Cases escalated per run of the schedule (each writes its audit entry; the rest wait a run).
ESCALATE_BATCH = 1000


def cases_escalate(*, now: datetime | None = None) -> int:
    """Raise the severity of open cases that have grown old under their kind's policy. Safe twice."""
    from exceptions.policies import policies_by_kind, severity_for

    now = now or timezone.now()
    actor = Actor.for_task("exceptions.cases_escalate")
    kinds = list(
        ExceptionCase.objects.filter(status__in=OPEN_STATUSES)
        .exclude(severity="critical")
        .order_by()
        .values_list("kind", flat=True)
        .distinct()
    )
    changed = 0
    for kind, policy in policies_by_kind(kinds).items():
        hours = [h for h in (policy.high_after_hours, policy.critical_after_hours) if h is not None]
        if not hours:
            continue
        candidates = (
            ExceptionCase.objects.filter(
                kind=kind,
                status__in=OPEN_STATUSES,
                first_seen_at__lte=now - timedelta(hours=min(hours)),
            )
            .exclude(severity="critical")
            .order_by("id")
            .values_list("pk", flat=True)[:ESCALATE_BATCH]
        )
        for case_id in list(candidates):
            with transaction.atomic():
                case = _lock(case_id=case_id, version=None)
                new = severity_for(
                    policy=policy,
                    base=case.severity,
                    amount=case.amount_at_stake,
                    opened_at=case.first_seen_at,
                    now=now,
                )
                if new == case.severity:
                    continue
                before = case.severity
                case.severity = new
                case.save(update_fields=["severity"])  # no version bump: no one's form goes stale
                audit_record(
                    actor=actor,
                    action="case.escalate",
                    obj=case,
                    before={"severity": before},
                    after={"severity": new},
                    reason=f"open longer than the {kind} policy allows",
                )
                changed += 1
    return changed
