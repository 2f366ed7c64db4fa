"""The ERP posting cases in the workbench: what "retry now" does for a failed or dead posting
and for a missing GL mapping, and what applies a corrected posting date or a new account
mapping. Each calls one erp_sync service (registered at import, like appliers.py).

A replayed posting goes back to the outbox as pending; the scheduled drain (every minute) sends
it, and the drain resolves the case when the ERP takes it (erp_sync closes its posting cases).
"""

from __future__ import annotations

import datetime
from typing import Any

from core.actors import Actor
from core.errors import AppError
from erp_sync.models import AccountMapping, ErpConnection, Posting, PostingStatus
from erp_sync.services import account_mapping_set, posting_replay, postings_release_held
from erp_sync.services.corrections import posting_date_correct, posting_date_of
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import CaseKind, CaseProposal, ExceptionCase
from exceptions.workbench.services import APPLIERS, Applier, RetryOutcome, retry_handler

POSTING_KINDS = (CaseKind.POSTING_FAILED, CaseKind.POSTING_DEAD)


def case_posting(case: ExceptionCase) -> Posting | None:
    """The posting a posting_failed / posting_dead case is about."""
    if case.source_type != "erp_sync.posting" or not str(case.source_id).isdigit():
        return None
    return Posting.objects.select_related("connection").filter(pk=int(case.source_id)).first()


def case_connection(case: ExceptionCase) -> ErpConnection | None:
    """The connection a missing_gl_mapping case asks a mapping of."""
    conn_id = (case.details or {}).get("connection_id")
    if conn_id is None and case.source_type == "erp_sync.erpconnection":
        conn_id = case.source_id
    if conn_id is None or not str(conn_id).isdigit():
        return None
    return ErpConnection.objects.filter(pk=int(conn_id)).first()


def _replayed(posting: Posting, actor: Actor, reason: str) -> tuple[bool, str]:
    if posting.status == PostingStatus.POSTED:
        return (
            True,
            f"{posting.external_id} is already posted ({posting.erp_number or posting.erp_id}).",
        )
    replayed = posting_replay(posting=posting, actor=actor, reason=reason)
    return False, (
        f"{replayed.external_id} is pending again with a fresh retry budget; the outbox sends it "
        "within a minute and this case resolves when the ERP takes it."
    )


def _retry_posting(case: ExceptionCase, actor: Actor) -> RetryOutcome:
    posting = case_posting(case)
    if posting is None:
        return RetryOutcome(False, "The posting of this case no longer exists.")
    try:
        resolved, message = _replayed(posting, actor, f"retry now from case #{case.pk}")
    except AppError as exc:
        return RetryOutcome(False, f"Not replayed: {exc.message}")
    return RetryOutcome(resolved, message)


retry_handler(CaseKind.POSTING_FAILED)(_retry_posting)
retry_handler(CaseKind.POSTING_DEAD)(_retry_posting)


@retry_handler(CaseKind.MISSING_GL_MAPPING)
def _retry_mapping(case: ExceptionCase, actor: Actor) -> RetryOutcome:
    """If the account has been mapped meanwhile, release the postings held for it."""
    conn = case_connection(case)
    if conn is None:
        return RetryOutcome(False, "The ERP connection of this case no longer exists.")
    d = case.details or {}
    role, key = d.get("role", ""), d.get("key", "")
    mapped = AccountMapping.objects.filter(connection=conn, role=role, key__in=[key, ""]).exists()
    if not mapped:
        return RetryOutcome(False, f"No {role} account is mapped on {conn.name} yet.")
    released = postings_release_held(connection=conn, actor=actor)
    return RetryOutcome(True, f"{released} held posting(s) released to the outbox.")


def _apply_posting_date(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Date the posting in an open period, then replay it."""
    posting = Posting.objects.get(pk=int(proposal.target_id))
    new_date = datetime.date.fromisoformat(str(proposal.proposed["posting_date"]))
    reason = f"{proposal.reason_code}: {proposal.comment} (case #{proposal.case_id})"
    corrected = posting_date_correct(posting=posting, new_date=new_date, actor=actor, reason=reason)
    _, message = _replayed(corrected, actor, reason)
    return False, {
        "posting_id": posting.pk,
        "posting_date": new_date.isoformat(),
        "summary": f"Dated {new_date.isoformat()}. {message}",
    }


def _apply_gl_mapping(proposal: CaseProposal, actor: Actor) -> tuple[bool, dict[str, Any]]:
    """Map the account; erp_sync resolves the case and releases the held postings."""
    p = proposal.proposed
    conn = ErpConnection.objects.get(pk=int(p["connection_id"]))
    held = Posting.objects.filter(connection=conn, status=PostingStatus.HELD).count()
    mapping = account_mapping_set(
        connection=conn, role=p["role"], key=p.get("key", ""), account=p["account"], actor=actor
    )
    return True, {
        "mapping_id": mapping.pk,
        "released": held,
        "summary": f"{p['role']}{' ' + p['key'] if p.get('key') else ''} mapped to "
        f"{mapping.account} on {conn.name}; {held} held posting(s) released.",
    }


APPLIERS["posting_date"] = Applier(apply=_apply_posting_date)
APPLIERS["gl_mapping"] = Applier(apply=_apply_gl_mapping)


def posting_date_original(case: ExceptionCase) -> dict[str, Any]:
    """The failed posting as the correction form shows it (raises when there is none)."""
    posting = case_posting(case)
    if posting is None or posting_date_of(posting) is None:
        raise AppError(
            "This case's posting carries no date to correct.",
            code=ExceptionsErrorCode.INVALID_CORRECTION,
        )
    day = posting_date_of(posting)
    assert day is not None
    return {"posting_id": posting.pk, "posting_date": day.isoformat()}


def parse_day(raw: str, *, field: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(raw.strip())
    except ValueError:
        raise AppError(
            f"{field}: '{raw}' is not a date (YYYY-MM-DD).",
            code=ExceptionsErrorCode.INVALID_CORRECTION,
            extra={"field": field},
        ) from None
