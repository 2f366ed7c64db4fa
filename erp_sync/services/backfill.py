"""Backfill: the postings a connection would have received for entries booked before it existed.

The ledger writer gives each entry one posting per connection of its legal entity *at the time
it books the entry*; a connection added later starts empty. `postings_backfill(connection=,
since=, actor=)` writes, for every entry of the connection's legal entity dated on or after
`since`, the postings `ledger_consume` would have written for that connection, with the same
deterministic external ids, in entry order (so a credit memo or a void finds the posting of the
invoice it depends on). Postings that exist already are left as they are: running it twice
creates nothing new. One audit entry says what was written and why.

A void of an invoice the connection never received (dated before `since`) is skipped: there is
nothing of it to cancel in that ERP. Summarized-journal connections need no backfill: each
summary carries every entry of the entity not carried yet.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from billing.models import FinanceEvent
from core.actors import Actor
from core.errors import AppError
from core.models import Customer
from erp_sync import error_codes
from erp_sync.models import (
    DocumentType,
    EntryKind,
    ErpConnection,
    JournalEntry,
    Posting,
    PostingMode,
)
from erp_sync.services.ledger import _document_for_erp, _postings_for, external_id_of
from exceptions.services import audit_record

#: External ids listed in the audit entry (the counts are always complete).
AUDIT_IDS = 200
DOCUMENT_KINDS = (EntryKind.INVOICE, EntryKind.ADJUSTMENT, EntryKind.CREDIT_MEMO)


@dataclass
class BackfillResult:
    created: list[str] = field(default_factory=list)  # external ids written now
    existing: int = 0  # entries whose postings for the connection were there already
    skipped: list[str] = field(default_factory=list)  # why an entry got nothing, one line each


def _source(entry: JournalEntry) -> dict[str, Any]:
    """What the ledger writer handed `_postings_for` when it booked the entry."""
    if entry.kind in DOCUMENT_KINDS and entry.source_event_id is not None:
        event = FinanceEvent.objects.get(pk=entry.source_event_id)
        payload = event.payload
        customer = Customer.objects.get(pk=payload["document"]["customer_id"])
        deferred = set(
            entry.lines.filter(account="deferred_revenue", source_line__isnull=False).values_list(
                "source_line_id", flat=True
            )
        )
        doc = payload["document"]
        return {
            "document": _document_for_erp(payload, customer, deferred),
            "invoice_id": doc["id"],
            "credits_invoice_id": doc.get("credits_id")
            if entry.kind == EntryKind.CREDIT_MEMO
            else None,
        }
    original = entry.reversal_of
    if (
        entry.kind == EntryKind.VOID
        and original is not None
        and original.kind in (EntryKind.INVOICE, EntryKind.ADJUSTMENT)
    ):
        return {
            "document": None,
            "invoice_id": entry.source_document_id,
            "credits_invoice_id": None,
        }
    return {"document": None, "invoice_id": None, "credits_invoice_id": None}


def postings_backfill(
    *, connection: ErpConnection, since: datetime.date, actor: Actor, reason: str = ""
) -> BackfillResult:
    """Write the missing postings of `connection` for its legal entity's entries dated on or
    after `since` (documents mode). Idempotent; one audit entry."""
    if connection.mode != PostingMode.DOCUMENTS:
        raise AppError(
            f"ERP connection {connection.name!r} receives summarized journals: each summary "
            "carries every entry not carried yet, so there is nothing to backfill.",
            code=error_codes.BACKFILL_NOT_DOCUMENTS,
            extra={"field": "connection", "mode": connection.mode},
        )
    result = BackfillResult()
    with transaction.atomic():
        conn = ErpConnection.objects.select_for_update().get(pk=connection.pk)
        entries = (
            JournalEntry.objects.filter(legal_entity_id=conn.legal_entity_id, date__gte=since)
            .select_related("reversal_of")
            .order_by("id")
        )
        for entry in entries:
            if Posting.objects.filter(connection=conn, entry=entry).exists():
                result.existing += 1
                continue
            source = _source(entry)
            if entry.kind == EntryKind.VOID and source["invoice_id"] is not None:
                target = external_id_of(conn, DocumentType.INVOICE, source["invoice_id"])
                if not Posting.objects.filter(connection=conn, external_id=target).exists():
                    result.skipped.append(
                        f"{entry.key}: the voided invoice ({target}) was never sent to {conn.name}"
                    )
                    continue
            postings = _postings_for(entry=entry, connections=[conn], save=False, **source)
            try:
                with transaction.atomic():  # a posting the ledger writer wrote meanwhile
                    Posting.objects.bulk_create(postings)
            except IntegrityError:
                result.existing += 1
                continue
            result.created += [p.external_id for p in postings]
        audit_record(
            actor=actor,
            action="postings.backfill",
            obj=conn,
            after={
                "since": since.isoformat(),
                "created": len(result.created),
                "existing": result.existing,
                "skipped": result.skipped[:AUDIT_IDS],
                "external_ids": result.created[:AUDIT_IDS],
            },
            reason=reason,
        )
    return result
