"""Corrections the exception workbench applies to a posting before it is replayed.

A posting the ERP refused because its date falls in a closed period is sent again dated in an
open one: `posting_date_correct` changes the date the ERP books it on (a document's issue date,
a journal's date) in the outbox row, audited with the date before and after. Our own ledger
entry keeps its date (posted entries are never edited, invariant 3); the posting is then
replayed with `outbox.posting_replay`, which the caller does (each service writes its own
audit entry).
"""

from __future__ import annotations

import datetime

from django.db import transaction

from core.actors import Actor
from core.errors import AppError
from erp_sync import error_codes
from erp_sync.models import DocumentType, Posting
from erp_sync.services.outbox import REPLAYABLE
from exceptions.services import audit_record

#: A posting date that cannot be used (no date, or a document that carries none).
POSTING_DATE_INVALID = "erp_posting_date_invalid"


def posting_date_of(posting: Posting) -> datetime.date | None:
    """The date the ERP books this posting on (None for a cancellation, which carries none)."""
    raw = posting.payload.get(
        "date" if posting.document_type == DocumentType.JOURNAL else "issue_date"
    )
    return datetime.date.fromisoformat(raw) if raw else None


def posting_date_correct(
    *, posting: Posting, new_date: datetime.date, actor: Actor, reason: str
) -> Posting:
    """Date a failed, dead or held posting on `new_date` (documents: the issue date, and the due
    date when it would fall before it; journals: the date). Audited; nothing is sent here."""
    if not reason.strip():
        raise AppError(
            "Correcting a posting date needs a reason.", code=error_codes.REASON_REQUIRED
        )
    with transaction.atomic():
        locked = Posting.objects.select_for_update().get(pk=posting.pk)
        if locked.status not in REPLAYABLE:
            raise AppError(
                f"{locked.external_id} is {locked.status}; only a failed, dead or held posting's "
                "date is corrected.",
                code=error_codes.POSTING_NOT_REPLAYABLE,
                extra={"status": locked.status},
            )
        old = posting_date_of(locked)
        if old is None:
            raise AppError(
                f"{locked.external_id} ({locked.get_document_type_display()}) carries no date.",
                code=POSTING_DATE_INVALID,
                extra={"field": "posting_date"},
            )
        if new_date == old:
            raise AppError(
                f"{locked.external_id} is already dated {old.isoformat()}.",
                code=POSTING_DATE_INVALID,
                extra={"field": "posting_date"},
            )
        payload = dict(locked.payload)
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        if locked.document_type == DocumentType.JOURNAL:
            before["date"], after["date"] = payload["date"], new_date.isoformat()
            payload["date"] = new_date.isoformat()
        else:
            before["issue_date"], after["issue_date"] = payload["issue_date"], new_date.isoformat()
            payload["issue_date"] = new_date.isoformat()
            due = payload.get("due_date")
            if due and datetime.date.fromisoformat(due) < new_date:
                before["due_date"], after["due_date"] = due, new_date.isoformat()
                payload["due_date"] = new_date.isoformat()
        locked.payload = payload
        locked.save(update_fields=["payload", "updated_at"])
        audit_record(
            actor=actor,
            action="posting.date_correct",
            obj=locked,
            before=before,
            after=after,
            reason=reason,
        )
    return locked
