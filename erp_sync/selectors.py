"""Reads of erp_sync: postings and their attempts, connections, ledger entries, reconciliations."""

from __future__ import annotations

import datetime

from django.db.models import Count, Prefetch, Q, QuerySet

from erp_sync.models import (
    ErpConnection,
    JournalEntry,
    Posting,
    PostingAttempt,
    PostingStatus,
    ReconciliationRun,
)


def postings(
    *,
    status: str = "",
    connection_id: int | None = None,
    document_type: str = "",
    customer: str = "",
    legal_entity: str = "",
    updated_since: datetime.datetime | None = None,
) -> QuerySet[Posting]:
    """Postings filtered as the posting-status API offers it, in a stable order
    (last change, then id): a client polling `updated_since` sees every change once more."""
    qs = Posting.objects.select_related("connection", "legal_entity", "customer")
    if status:
        qs = qs.filter(status=status)
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    if document_type:
        qs = qs.filter(document_type=document_type)
    if customer:
        qs = qs.filter(customer__code=customer)
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    if updated_since is not None:
        qs = qs.filter(updated_at__gte=updated_since)
    return qs.order_by("updated_at", "id")


def posting_detail(*, pk: int) -> Posting:
    return (
        Posting.objects.select_related("connection", "legal_entity", "customer", "entry")
        .prefetch_related(
            Prefetch("attempt_rows", queryset=PostingAttempt.objects.order_by("number"))
        )
        .get(pk=pk)
    )


def connections() -> QuerySet[ErpConnection]:
    return (
        ErpConnection.objects.select_related("legal_entity")
        .prefetch_related("account_mappings")
        .annotate(
            open_postings=Count(
                "postings",
                filter=~Q(postings__status=PostingStatus.POSTED),
            )
        )
        .order_by("legal_entity__code", "name")
    )


def status_counts(*, connection_id: int | None = None) -> dict[str, int]:
    qs = Posting.objects.all()
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    return dict(qs.values_list("status").annotate(n=Count("id")).values_list("status", "n"))


def journal_entries(*, legal_entity: str = "", limit: int = 200) -> list[JournalEntry]:
    qs = JournalEntry.objects.select_related("legal_entity", "customer").prefetch_related("lines")
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    return list(qs.order_by("-id")[:limit])


def reconciliation_runs(*, legal_entity: str = "", limit: int = 50) -> list[ReconciliationRun]:
    qs = ReconciliationRun.objects.select_related("legal_entity")
    if legal_entity:
        qs = qs.filter(legal_entity__code=legal_entity)
    return list(qs.order_by("-started_at")[:limit])


def document_postings(*, invoice_id: int) -> QuerySet[Posting]:
    """Every posting of one billing document to any ERP: the document itself (invoice, credit
    memo, the cancellation of a void) and its journal entries, in the order they were queued."""
    return (
        Posting.objects.filter(
            Q(source_document_id=invoice_id) | Q(entry__source_document_id=invoice_id)
        )
        .select_related("connection", "currency", "entry")
        .order_by("id")
    )
