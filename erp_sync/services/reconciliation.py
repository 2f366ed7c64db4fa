"""Reconciliation: billing, our ledger, the outbox and each ERP, for one legal entity's month.

`reconcile(legal_entity=..., start=..., end=..., actor=...)` reads every posted document back
from its ERP by external id and compares currency, total and tax; lists the documents in the
ERP carrying our external id prefix that we have no posting for; and computes, per currency,
to the cent: the net invoiced amount (finalized invoices and adjustments not voided, less credit
memos), the receivable our ledger booked for them, what the outbox posted, and what the ERP
holds, each with its difference. Per ERP account: our ledger (mapped to the connection's
accounts) against the lines the ERP reads back, less what is not posted yet. Any difference,
per document or per account, opens a `reconciliation_mismatch` case showing both sides.

Connections in `summarized_journals` mode are reconciled too: each summary journal posted for a
day of the month is read back by its external id (total and lines), the ERP's moves under our
prefix that we have no summary for are listed, and per account the month's ledger entries are
compared with the summaries' lines the ERP holds.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from billing.models import InvoiceStatus
from billing.periods import local_date_of
from billing.selectors import invoices
from core.actors import Actor
from core.models import LegalEntity
from erp_sync.connectors import base
from erp_sync.models import (
    AccountRole,
    CreditMemoMode,
    DocumentType,
    EntryKind,
    ErpConnection,
    JournalEntry,
    JournalLine,
    Posting,
    PostingMode,
    PostingStatus,
    ReconciliationRun,
    SummaryMember,
)
from erp_sync.services.outbox import Resolver, connector_of
from exceptions.services import audit_record, case_open_or_update

ZERO = Decimal(0)
DOCUMENT_ENTRY_KINDS = (
    EntryKind.INVOICE,
    EntryKind.ADJUSTMENT,
    EntryKind.CREDIT_MEMO,
    EntryKind.VOID,
)


def _s(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.0001")).normalize(), "f") if value else "0"


def _billed(entity: LegalEntity, start: datetime.date, end: datetime.date) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    docs = invoices(
        legal_entity=entity.code, issued_from=start, issued_to=end - datetime.timedelta(days=1)
    ).exclude(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.VOID])
    for cur, total in docs.values_list("currency_id", "total"):
        out[cur] += total  # credit memos carry negative totals
    return out


def _document_ids(entity: LegalEntity, start: datetime.date, end: datetime.date) -> list[int]:
    return list(
        invoices(legal_entity=entity.code, issued_from=start, issued_to=end - datetime.timedelta(1))
        .exclude(status=InvoiceStatus.DRAFT)
        .values_list("pk", flat=True)
    )


def _ledger_receivable(doc_ids: list[int]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for cur, debit, credit in JournalLine.objects.filter(
        entry__source_document_id__in=doc_ids,
        entry__kind__in=DOCUMENT_ENTRY_KINDS,
        account="receivable",
    ).values_list("currency_id", "debit", "credit"):
        out[cur] += debit - credit
    return out


def _signed(posting: Posting) -> Decimal:
    if posting.document_type == DocumentType.CREDIT_MEMO:
        return -posting.amount
    return posting.amount  # cancellations carry minus the voided total


def reconcile(
    *, legal_entity: LegalEntity, start: datetime.date, end: datetime.date, actor: Actor
) -> ReconciliationRun:
    """Compare one legal entity's documents issued in [start, end) across billing, ledger,
    outbox and ERP; open a case for each difference. Reads the ERP; never changes it."""
    run = ReconciliationRun.objects.create(
        legal_entity=legal_entity,
        period_start=start,
        period_end=end,
        started_at=timezone.now(),
        requested_by=actor.label,
    )
    doc_ids = _document_ids(legal_entity, start, end)
    billed = _billed(legal_entity, start, end)
    ledger = _ledger_receivable(doc_ids)
    mismatches: list[dict[str, Any]] = []
    connections: dict[str, Any] = {}
    for conn in ErpConnection.objects.filter(legal_entity=legal_entity).order_by("id"):
        if conn.mode == PostingMode.SUMMARIZED_JOURNALS:
            connections[conn.name] = _reconcile_summarized(conn, start, end, mismatches)
        else:
            connections[conn.name] = _reconcile_connection(conn, doc_ids, start, end, mismatches)
    currencies = sorted(
        set(billed) | set(ledger) | {c for v in connections.values() for c in v["posted"]}
    )
    columns = []
    for cur in currencies:
        row: dict[str, Any] = {
            "currency": cur,
            "invoiced": _s(billed.get(cur, ZERO)),
            "ledger_receivable": _s(ledger.get(cur, ZERO)),
            "ledger_minus_invoiced": _s(ledger.get(cur, ZERO) - billed.get(cur, ZERO)),
            "connections": {},
        }
        if ledger.get(cur, ZERO) != billed.get(cur, ZERO):
            mismatches.append(
                {
                    "what": "ledger receivable vs invoiced",
                    "currency": cur,
                    "ours": _s(billed.get(cur, ZERO)),
                    "theirs": _s(ledger.get(cur, ZERO)),
                }
            )
        for name, c in connections.items():
            posted, erp = c["posted"].get(cur, ZERO), c["erp"].get(cur, ZERO)
            row["connections"][name] = {
                "mode": c["mode"],
                "posted": _s(posted),
                # a summary carries every entry of a day (payments too): not receivable alone
                "posted_minus_ledger": _s(posted - ledger.get(cur, ZERO))
                if c["mode"] == PostingMode.DOCUMENTS
                else "",
                "erp": _s(erp),
                "erp_minus_posted": _s(erp - posted),
                "unposted": c["unposted"],
            }
        columns.append(row)
    run.totals = {
        "currencies": columns,
        "accounts": {name: c["accounts"] for name, c in connections.items()},
        "documents": len(doc_ids),
    }
    run.mismatches = mismatches
    run.matched = not mismatches
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save()
        for m in mismatches:
            subject = m.get("external_id") or m["what"] + m.get("currency", "") + m.get(
                "account", ""
            )
            fingerprint = (
                f"reconciliation_mismatch:{legal_entity.pk}:{start:%Y-%m}:"
                f"{m.get('connection', '')}:{subject}"
            )
            case_open_or_update(
                kind="reconciliation_mismatch",
                fingerprint=fingerprint[:255],
                title=f"Reconciliation {legal_entity.code} {start:%Y-%m}: {m['what']} "
                f"{m.get('external_id') or m.get('account', '')}".strip(),
                actor=actor,
                severity="high",
                error_code="reconciliation_mismatch",
                error_message=f"ours: {m.get('ours')}; theirs: {m.get('theirs')}",
                source=run,
                legal_entity_id=legal_entity.pk,
                details=m,
            )
        audit_record(
            actor=actor,
            action="reconciliation.run",
            obj=run,
            after={"matched": run.matched, "mismatches": len(mismatches)},
        )
    return run


def _reconcile_connection(
    conn: ErpConnection,
    doc_ids: list[int],
    start: datetime.date,
    end: datetime.date,
    mismatches: list[dict[str, Any]],
) -> dict[str, Any]:
    postings = list(
        Posting.objects.filter(connection=conn, source_document_id__in=doc_ids).exclude(
            document_type=DocumentType.JOURNAL
        )
    )
    # journals that complete a document in the ERP (defer_by_journal): their lines count per
    # account, not in the document totals
    deferrals = list(
        Posting.objects.filter(
            connection=conn,
            source_document_id__in=doc_ids,
            document_type=DocumentType.JOURNAL,
            entry__kind__in=DOCUMENT_ENTRY_KINDS,
            status=PostingStatus.POSTED,
        )
    )
    posted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    erp: dict[str, Decimal] = defaultdict(lambda: ZERO)
    erp_accounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    unposted = 0
    cancelled = {
        p.payload.get("target_external_id")
        for p in postings
        if p.document_type == DocumentType.INVOICE_CANCEL and p.status == PostingStatus.POSTED
    }
    try:
        connector = connector_of(conn)
        connector.recorder = lambda exchange: None
    except base.ConnectorError as exc:
        mismatches.append(
            {"what": "ERP unreachable", "connection": conn.name, "ours": "", "theirs": exc.message}
        )
        connector = None
    for p in postings:
        if p.status != PostingStatus.POSTED:
            unposted += 1
            continue
        posted[p.currency_id] += _signed(p)
        if connector is None or p.document_type == DocumentType.INVOICE_CANCEL:
            if p.document_type == DocumentType.INVOICE_CANCEL:
                erp[p.currency_id] += p.amount  # checked on its invoice's read-back below
            continue
        try:
            rec = connector.find_by_external_id(p.document_kind, p.external_id)
        except base.ConnectorError as exc:
            mismatches.append(
                {
                    "what": "ERP read-back failed",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": _s(_signed(p)),
                    "theirs": exc.message,
                }
            )
            continue
        expected_state = "cancelled" if p.external_id in cancelled else None
        ours = {
            "currency": p.currency_id,
            "total": _s(p.amount),
            "tax_total": _s(Decimal(p.payload.get("tax_total", "0"))),
            "state": expected_state or "posted",
        }
        if rec is None:
            mismatches.append(
                {
                    "what": "posted document missing in the ERP",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": ours,
                    "theirs": None,
                }
            )
            continue
        theirs = {
            "currency": rec.currency,
            "total": _s(rec.total),
            "tax_total": _s(rec.tax_total),
            "state": rec.state if expected_state else ("posted" if rec.posted else rec.state),
        }
        erp[rec.currency] += (
            -rec.total if p.document_type == DocumentType.CREDIT_MEMO else rec.total
        )
        if not expected_state:  # a voided invoice nets to nothing on both sides
            for ln in rec.lines:
                erp_accounts[ln.account] += ln.debit - ln.credit
        if ours != theirs:
            mismatches.append(
                {
                    "what": "document differs",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": ours,
                    "theirs": theirs,
                }
            )
    if connector is not None:
        for p in deferrals:
            try:
                rec = connector.find_by_external_id("journal", p.external_id)
            except base.ConnectorError:
                rec = None
            if rec is None:
                mismatches.append(
                    {
                        "what": "posted journal missing in the ERP",
                        "connection": conn.name,
                        "external_id": p.external_id,
                        "ours": _s(p.amount),
                        "theirs": None,
                    }
                )
                continue
            for ln in rec.lines:
                erp_accounts[ln.account] += ln.debit - ln.credit
    if connector is not None:
        _unknown_in_erp(conn, connector, ("invoice", "credit_memo"), start, end, mismatches)
    return {
        "mode": conn.mode,
        "posted": dict(posted),
        "erp": dict(erp),
        "unposted": unposted,
        "accounts": _account_columns(conn, doc_ids, erp_accounts, mismatches),
    }


def _erp_account(
    resolver: Resolver, account: str, entry_kind: str, metric: str, component: str
) -> str:
    """The ERP account a ledger line lands on for this connection (as the outbox maps it)."""
    if (
        entry_kind == EntryKind.CREDIT_MEMO
        and account.partition(":")[0] == "revenue"
        and resolver.conn.credit_memo_mode == CreditMemoMode.CONTRA_REVENUE
    ):
        mapped = resolver.role_account(
            AccountRole.CREDIT_MEMO, [k for k in (metric, component) if k]
        )
    else:
        mapped = resolver.ledger_account(account, metric=metric, component=component)
    return mapped or f"(unmapped {account})"


def _account_rows(
    conn: ErpConnection,
    ours: dict[str, Decimal],
    unposted: dict[str, Decimal],
    erp_accounts: dict[str, Decimal],
    mismatches: list[dict[str, Any]],
) -> list[dict[str, str]]:
    """Per ERP account: our ledger, the part of it not posted to the ERP yet, the ERP's lines
    read back, and the difference ERP - (ledger - not posted). A difference is a mismatch."""
    rows = []
    for account in sorted(set(ours) | set(erp_accounts)):
        expected = ours.get(account, ZERO) - unposted.get(account, ZERO)
        difference = erp_accounts.get(account, ZERO) - expected
        rows.append(
            {
                "account": account,
                "ledger": _s(ours.get(account, ZERO)),
                "unposted": _s(unposted.get(account, ZERO)),
                "erp": _s(erp_accounts.get(account, ZERO)),
                "difference": _s(difference),
            }
        )
        if difference:
            mismatches.append(
                {
                    "what": "account total differs",
                    "connection": conn.name,
                    "account": account,
                    "ours": {"ledger_posted": _s(expected), "ledger": _s(ours.get(account, ZERO))},
                    "theirs": {"erp": _s(erp_accounts.get(account, ZERO))},
                }
            )
    return rows


def _sent_entries(conn: ErpConnection, entry_ids: list[int]) -> set[int]:
    """The entries every posting of which on this connection is posted (what the ERP holds)."""
    status: dict[int, bool] = {}
    for entry_id, st in Posting.objects.filter(connection=conn, entry_id__in=entry_ids).values_list(
        "entry_id", "status"
    ):
        status[entry_id] = status.get(entry_id, True) and st == PostingStatus.POSTED
    return {e for e, ok in status.items() if ok}


def _account_columns(
    conn: ErpConnection,
    doc_ids: list[int],
    erp_accounts: dict[str, Decimal],
    mismatches: list[dict[str, Any]],
) -> list[dict[str, str]]:
    """Our ledger's document entries per ERP account (mapped as the outbox maps them) against
    the ERP's lines read back; entries not posted (held, failed, waiting) counted apart."""
    resolver = Resolver(conn)
    ours: dict[str, Decimal] = defaultdict(lambda: ZERO)
    unposted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    voided = set(
        JournalLine.objects.filter(
            entry__source_document_id__in=doc_ids, entry__kind=EntryKind.VOID
        ).values_list("entry__source_document_id", flat=True)
    )
    lines = list(
        JournalLine.objects.filter(
            entry__source_document_id__in=doc_ids, entry__kind__in=DOCUMENT_ENTRY_KINDS
        )
        .exclude(entry__source_document_id__in=voided)
        .values_list(
            "entry_id",
            "entry__kind",
            "account",
            "debit",
            "credit",
            "source_line__metric",
            "source_line__component",
        )
    )
    sent = _sent_entries(conn, sorted({ln[0] for ln in lines}))
    for entry_id, kind, account, debit, credit, metric, component in lines:
        mapped = _erp_account(resolver, account, kind, metric or "", component or "")
        ours[mapped] += debit - credit
        if entry_id not in sent:
            unposted[mapped] += debit - credit
    return _account_rows(conn, ours, unposted, erp_accounts, mismatches)


def _reconcile_summarized(
    conn: ErpConnection, start: datetime.date, end: datetime.date, mismatches: list[dict[str, Any]]
) -> dict[str, Any]:
    """A summarized-journal connection: the month's summaries read back from the ERP by external
    id, the ERP's moves under our prefix we have no summary for, and per account the month's
    ledger entries against the summaries' lines in the ERP."""
    resolver = Resolver(conn)
    entries = JournalEntry.objects.filter(
        legal_entity_id=conn.legal_entity_id, date__gte=start, date__lt=end
    )
    carried = dict(
        SummaryMember.objects.filter(connection=conn, entry__in=entries).values_list(
            "entry_id", "posting_id"
        )
    )
    summaries = list(Posting.objects.filter(pk__in=set(carried.values())).order_by("id"))
    posted_ids = {p.pk for p in summaries if p.status == PostingStatus.POSTED}
    ours: dict[str, Decimal] = defaultdict(lambda: ZERO)
    unposted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for entry_id, account, debit, credit in JournalLine.objects.filter(
        entry__in=entries
    ).values_list("entry_id", "account", "debit", "credit"):
        mapped = resolver.ledger_account(account) or f"(unmapped {account})"
        ours[mapped] += debit - credit
        if carried.get(entry_id) not in posted_ids:
            unposted[mapped] += debit - credit
    posted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    erp: dict[str, Decimal] = defaultdict(lambda: ZERO)
    erp_accounts: dict[str, Decimal] = defaultdict(lambda: ZERO)
    try:
        connector: base.Connector | None = connector_of(conn)
        assert connector is not None
        connector.recorder = lambda exchange: None
    except base.ConnectorError as exc:
        mismatches.append(
            {"what": "ERP unreachable", "connection": conn.name, "ours": "", "theirs": exc.message}
        )
        connector = None
    unposted_count = 0
    for p in summaries:
        if p.status != PostingStatus.POSTED:
            unposted_count += 1
            continue
        posted[p.currency_id] += p.amount
        if not p.payload.get("lines"):
            continue  # a day netting to zero on every account: nothing was sent
        if connector is None:
            continue
        try:
            rec = connector.find_by_external_id("journal", p.external_id)
        except base.ConnectorError as exc:
            mismatches.append(
                {
                    "what": "ERP read-back failed",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": _s(p.amount),
                    "theirs": exc.message,
                }
            )
            continue
        ours_doc = {"currency": p.currency_id, "total": _s(p.amount), "state": "posted"}
        if rec is None:
            mismatches.append(
                {
                    "what": "posted journal missing in the ERP",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": ours_doc,
                    "theirs": None,
                }
            )
            continue
        erp[rec.currency] += rec.total
        for ln in rec.lines:
            erp_accounts[ln.account] += ln.debit - ln.credit
        theirs = {
            "currency": rec.currency,
            "total": _s(rec.total),
            "state": "posted" if rec.posted else rec.state,
        }
        if theirs != ours_doc:
            mismatches.append(
                {
                    "what": "summary journal differs",
                    "connection": conn.name,
                    "external_id": p.external_id,
                    "ours": ours_doc,
                    "theirs": theirs,
                }
            )
    if connector is not None:
        _unknown_in_erp(conn, connector, ("journal",), start, end, mismatches)
    return {
        "mode": conn.mode,
        "posted": dict(posted),
        "erp": dict(erp),
        "unposted": unposted_count,
        "accounts": _account_rows(conn, ours, unposted, erp_accounts, mismatches),
    }


def _unknown_in_erp(
    conn: ErpConnection,
    connector: base.Connector,
    kinds: tuple[base.DocumentKind, ...],
    start: datetime.date,
    end: datetime.date,
    mismatches: list[dict[str, Any]],
) -> None:
    """Documents in the ERP dated in the month under our external id prefix that we have no
    posting for."""
    ours_ids = set(Posting.objects.filter(connection=conn).values_list("external_id", flat=True))
    for kind in kinds:
        try:
            found = connector.external_ids(
                kind, start=start, end=end, prefix=f"{conn.external_id_prefix}-"
            )
        except base.ConnectorError as exc:
            mismatches.append(
                {
                    "what": "ERP listing failed",
                    "connection": conn.name,
                    "ours": "",
                    "theirs": exc.message,
                }
            )
            continue
        for external_id in sorted(set(found) - ours_ids):
            mismatches.append(
                {
                    "what": "document in the ERP we have no record of",
                    "connection": conn.name,
                    "external_id": external_id,
                    "ours": None,
                    "theirs": {"kind": kind, "external_id": external_id},
                }
            )


def reconcile_last_month(
    *, actor: Actor, now: datetime.datetime | None = None
) -> list[ReconciliationRun]:
    """The daily task: last month of every legal entity that has an ERP connection."""
    now = now or timezone.now()
    runs = []
    for entity in LegalEntity.objects.filter(erp_connections__isnull=False).distinct():
        today = local_date_of(ts=now, tz=entity.timezone)
        end = today.replace(day=1)
        start = (end - datetime.timedelta(days=1)).replace(day=1)
        runs.append(reconcile(legal_entity=entity, start=start, end=end, actor=actor))
    return runs
