"""One dispatcher of case actions for the pages and the API: parse what was posted, call one
service, return the message to show. Raises AppError when refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model

from core.errors import AppError
from core.form_input import BIGINT_MAX, form_amount, form_id, form_int, form_text
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import ExceptionCase, ProposalKind
from exceptions.workbench import selectors, services
from exceptions.workbench.services import Caller


def rejected_form(case: ExceptionCase, rejected_id: str) -> dict[str, Any] | None:
    """The correction form of one rejected event of the case: its fields as received."""
    trace = selectors.case_trace(case=case)
    for r in trace.get("rejected", []):
        if str(r.pk) == rejected_id and r.status == "open" and isinstance(r.raw, dict):
            raw = r.raw
            fields = [(f, raw.get(f, "")) for f in selectors.EVENT_FIELDS]
            props = json.dumps(raw.get("properties", {}), sort_keys=True)
            return {"rejected": r, "fields": fields, "properties": props}
    return None


#: The free-text fields of the case actions, with their limits (core.form_input refuses a NUL or
#: a longer value with a 400 naming the field before any service runs).
_TEXT_FIELDS = {
    "comment": 2000,
    "body": 2000,
    "reason_code": 64,
    "assignee": 150,
    "account": 200,
    "key": 200,
    "posting_date": 10,
    "properties": 64_000,
}


def _version(data: Mapping[str, Any]) -> int | None:
    return form_int(data, "version", label="Version", high=BIGINT_MAX, required=False)


def _check_fields(data: Mapping[str, Any]) -> None:
    """Refuse a hostile value in any field an action reads, before any action runs."""
    for name, limit in _TEXT_FIELDS.items():
        form_text(data, name, max_length=limit)
    for name in selectors.EVENT_FIELDS:
        if not isinstance(data.get(name), (dict, list)):
            form_text(data, name, max_length=2000)
    for name in ("customer_id", "document", "conflict_id"):
        form_id(data, name, required=False)


def _corrected_event(data: Mapping[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    corrected = dict(raw)
    changed = data.get("corrected")
    if isinstance(changed, dict):  # the API sends the changed fields as an object
        return corrected | changed
    for name in selectors.EVENT_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        value = str(value).strip()
        if value == "" and name not in raw:
            continue
        corrected[name] = value
    props = str(data.get("properties", "") or "").strip()
    if props:
        try:
            parsed = json.loads(props)
        except json.JSONDecodeError as exc:
            raise AppError(
                f"Properties are not JSON: {exc}", code=ExceptionsErrorCode.INVALID_CORRECTION
            ) from None
        if parsed or "properties" in raw:
            corrected["properties"] = parsed
    return corrected


def run(*, case: ExceptionCase, caller: Caller, action: str, data: Mapping[str, Any]) -> str:
    """Run one case action; return the message to show. Raises AppError when refused."""
    p = data
    _check_fields(data)
    version = _version(data)
    if action == "assign":
        username = str(p.get("assignee", "") or "")
        user = get_user_model().objects.filter(username=username).first() if username else None
        services.case_assign(case_id=case.pk, assignee=user, caller=caller, version=version)
        return f"Assigned to {username or 'nobody'}."
    if action == "comment":
        services.case_comment(case_id=case.pk, body=p.get("body", ""), caller=caller)
        return "Comment added."
    if action == "dismiss":
        services.case_dismiss(
            case_id=case.pk,
            reason_code=p.get("reason_code", ""),
            comment=p.get("comment", ""),
            caller=caller,
            version=version,
        )
        return "Case dismissed."
    if action == "reopen":
        services.case_reopen(
            case_id=case.pk, reason=p.get("comment", ""), caller=caller, version=version
        )
        return "Case reopened."
    if action == "retry":
        outcome = services.case_retry(case_id=case.pk, caller=caller, version=version)
        return f"Retried: {outcome.message}"
    if action == "keep_original":
        services.case_keep_original(
            case_id=case.pk, comment=p.get("comment", ""), caller=caller, version=version
        )
        return "Original kept; case resolved."
    if action == "approve":
        proposal = services.proposal_approve(
            case_id=case.pk, caller=caller, version=version, comment=p.get("comment", "")
        )
        return proposal_message(proposal)
    if action == "reject":
        services.proposal_reject(
            case_id=case.pk, comment=p.get("comment", ""), caller=caller, version=version
        )
        return "Proposal rejected; the case is back in progress."
    propose = PROPOSALS.get(action)
    if propose is not None:
        return _propose(case, caller, p, version, propose(case, p))
    if action == "settle_adjustment":
        from exceptions.workbench.disputes import dispute_settle_by_adjustment

        closed = dispute_settle_by_adjustment(
            case_id=case.pk,
            document_id=form_id(p, "document", required=False),
            reason_code=str(p.get("reason_code", "") or ""),
            comment=str(p.get("comment", "") or ""),
            caller=caller,
            version=version,
        )
        return f"Dispute settled: {closed.resolution}"
    raise AppError(f"Unknown action '{action}'.", code=ExceptionsErrorCode.ACTION_NOT_AVAILABLE)


@dataclass(frozen=True)
class Proposal:
    """What a proposal action proposes (the form's reason code and comment come with it)."""

    kind: str
    target: str
    target_id: str
    original: dict[str, Any]
    proposed: dict[str, Any]
    amount: Decimal | None


def _propose(
    case: ExceptionCase,
    caller: Caller,
    p: Mapping[str, Any],
    version: int | None,
    proposal: Proposal,
) -> str:
    """Submit a proposal on `case` with the form's reason code and comment; say what follows."""
    submitted = services.proposal_submit(
        case_id=case.pk,
        kind=proposal.kind,
        target=proposal.target,
        target_id=proposal.target_id,
        original=proposal.original,
        proposed=proposal.proposed,
        amount=proposal.amount,
        reason_code=str(p.get("reason_code", "") or ""),
        comment=str(p.get("comment", "") or ""),
        caller=caller,
        version=version,
    )
    return proposal_message(submitted)


def _correct(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """A rejected event of the case, corrected (re-ingested once applied)."""
    rejected_id = p.get("rejected_id", "")
    form = rejected_form(case, str(rejected_id))
    if form is None:
        raise AppError(
            "That rejected event is not open on this case.",
            code=ExceptionsErrorCode.INVALID_CORRECTION,
        )
    raw = form["rejected"].raw
    return Proposal(
        kind=ProposalKind.CORRECTION,
        target="rejected_event",
        target_id=rejected_id,
        original=raw,
        proposed=_corrected_event(p, raw),
        amount=None,
    )


def _map_customer(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """The customer an unmapped reference belongs to (held events released once applied)."""
    d = case.details or {}
    customer_id = form_id(p, "customer_id", required=False) or None  # 0: none chosen
    original = {"source": d.get("source"), "customer_ref": d.get("customer_ref")}
    return Proposal(
        kind=ProposalKind.CORRECTION,
        target="customer_mapping",
        target_id=f"{d.get('source')}:{d.get('customer_ref')}",
        original=original | {"customer_id": None},
        proposed=original | {"customer_id": customer_id},
        amount=case.amount_at_stake,
    )


def proposal_message(proposal: Any) -> str:
    if proposal.status == "pending":
        return "Proposed; it waits for a different approver (four eyes)."
    if proposal.status == "failed":
        return f"Approved, but applying it failed: {proposal.result.get('error', '')}"
    return f"Applied. {proposal.result.get('summary', '')}".strip()


def _reverse(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """Propose a credit memo: for a disputed line, of the amount typed (default: the line's
    amount); otherwise of the whole invoice."""
    invoice_id = int(case.source_id)
    line_id = (case.details or {}).get("invoice_line_id")
    proposed: dict[str, Any] = {"invoice_id": invoice_id, "whole": True}
    amount = case.amount_at_stake
    if line_id:
        typed = form_amount(p, "amount", label="Amount", required=False)
        amount = typed if typed is not None else case.amount_at_stake
        proposed = {"invoice_id": invoice_id, "whole": False, "lines": {str(line_id): str(amount)}}
    return Proposal(
        kind=ProposalKind.REVERSAL,
        target="invoice",
        target_id=str(invoice_id),
        original={"invoice_id": invoice_id, "credit_memo": None},
        proposed=proposed,
        amount=amount,
    )


def _take_new_version(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """Propose that the version re-sent (`conflict_id`) supersede the event that stands."""
    from exceptions.workbench import supersede

    conflict_id = form_id(p, "conflict_id", required=False)
    original, proposed = supersede.proposal_sides(case=case, conflict_id=conflict_id)
    return Proposal(
        kind=ProposalKind.CORRECTION,
        target=supersede.TARGET,
        target_id=str(conflict_id),
        original=original,
        proposed=proposed,
        amount=case.amount_at_stake,
    )


def _correct_date(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """Propose a new posting date for a failed or dead posting (replayed once applied)."""
    from exceptions.workbench import erp

    original = erp.posting_date_original(case)
    day = erp.parse_day(str(p.get("posting_date", "") or ""), field="posting_date")
    return Proposal(
        kind=ProposalKind.CORRECTION,
        target="posting_date",
        target_id=str(original["posting_id"]),
        original=original,
        proposed=original | {"posting_date": day.isoformat()},
        amount=case.amount_at_stake,
    )


def _map_account(case: ExceptionCase, p: Mapping[str, Any]) -> Proposal:
    """Propose the ERP account of a missing GL mapping (held postings released once applied)."""
    from exceptions.workbench import erp

    conn = erp.case_connection(case)
    if conn is None:
        raise AppError(
            "This case names no ERP connection.", code=ExceptionsErrorCode.INVALID_CORRECTION
        )
    d = case.details or {}
    account = str(p.get("account", "") or "").strip()
    if not account:
        raise AppError(
            "account: type the ERP's account code.",
            code=ExceptionsErrorCode.INVALID_CORRECTION,
            extra={"field": "account"},
        )
    # "key" blank maps the role's default (covers every key of the role)
    key = str(p.get("key", d.get("key", "")) or "").strip()
    original = {"connection_id": conn.pk, "role": d.get("role", ""), "key": key, "account": None}
    return Proposal(
        kind=ProposalKind.CORRECTION,
        target="gl_mapping",
        target_id=f"{conn.pk}:{d.get('role', '')}:{key}",
        original=original,
        proposed=original | {"account": account},
        amount=None,
    )


#: The actions that propose a correction or reversal: each says what it proposes.
PROPOSALS: dict[str, Callable[[ExceptionCase, Mapping[str, Any]], Proposal]] = {
    "correct": _correct,
    "map_customer": _map_customer,
    "reverse": _reverse,
    "take_new_version": _take_new_version,
    "correct_date": _correct_date,
    "map_account": _map_account,
}
