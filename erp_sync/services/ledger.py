"""The ledger writer: billing's finance events -> balanced journal entries + outbox postings.

`ledger_consume` reads `billing.selectors.finance_events(after_id=cursor)` and handles each
event in its own transaction, which writes the journal entry (checked balanced here, and by a
deferred trigger on PostgreSQL), the revenue schedules of fees billed in advance, one `Posting`
per connection of the legal entity, the audit entry and the cursor's new position. Every entry
has a unique `key` per source (``invoice.finalized:<invoice id>``, ...), so replaying the events
from zero writes nothing a second time.

Our ledger's accounts are logical (see erp_sync.models.JournalEntry); each connection maps them
to its ERP's accounts when the outbox sends (erp_sync.services.outbox), so a missing mapping
holds the ERP side only, never the ledger.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.models import FinanceEvent
from billing.periods import local_date_of
from billing.selectors import finance_events
from core.actors import Actor
from core.errors import AppError
from core.models import Customer, LegalEntity
from erp_sync import error_codes
from erp_sync.models import (
    DocumentType,
    EntryKind,
    ErpConnection,
    JournalEntry,
    JournalLine,
    LedgerCursor,
    Posting,
    PostingMode,
    RevenueSchedule,
    ScheduleStatus,
)
from exceptions.services import audit_record, case_open_or_update

log = logging.getLogger(__name__)

ZERO = Decimal(0)
CURSOR = "erp_sync.ledger"
#: Finance events read per call of ledger_consume (each is its own transaction).
EVENT_BATCH = 500
#: Revenue schedules recognised per call of revenue_recognize_due.
RECOGNITION_BATCH = 500

HANDLED = (
    "invoice.finalized",
    "credit_memo.issued",
    "invoice.voided",
    "invoice.paid",
    "invoice.payment_recorded",
)


# --------------------------------------------------------------------------- accounts


def account_revenue(metric: str, component: str) -> str:
    return f"revenue:{metric or component}" if (metric or component) else "revenue"


def rate_key(rate: str | Decimal) -> str:
    """'0.190000' -> '0.19': the key of a tax rate in account names and mappings."""
    value = Decimal(str(rate)).normalize()
    text = format(value, "f")
    return text if "." in text else f"{text}.0" if text != "0" else "0"


# --------------------------------------------------------------------------- writing entries


@dataclass
class LineSpec:
    account: str
    amount: Decimal  # positive: debit; negative: credit
    description: str = ""
    customer_id: int | None = None
    source_line_id: int | None = None


@dataclass
class EntrySpec:
    key: str
    kind: str
    legal_entity_id: int
    currency_id: str
    date: datetime.date
    description: str
    lines: list[LineSpec]
    customer_id: int | None = None
    source_document_id: int | None = None
    source_event_id: int | None = None
    reversal_of: JournalEntry | None = None
    schedules: list[dict[str, Any]] = field(default_factory=list)


def check_balanced(spec: EntrySpec) -> None:
    """Debits equal credits (one currency per entry): AppError naming both sums otherwise."""
    debit = sum((ln.amount for ln in spec.lines if ln.amount > 0), ZERO)
    credit = -sum((ln.amount for ln in spec.lines if ln.amount < 0), ZERO)
    if debit != credit:
        raise AppError(
            f"Journal entry {spec.key} does not balance in {spec.currency_id}: "
            f"debits {debit} <> credits {credit} (difference {debit - credit}).",
            code=error_codes.UNBALANCED_ENTRY,
            extra={"key": spec.key, "debit": str(debit), "credit": str(credit)},
        )
    if len([ln for ln in spec.lines if ln.amount]) < 2:
        raise AppError(
            f"Journal entry {spec.key} needs at least two lines.",
            code=error_codes.UNBALANCED_ENTRY,
            extra={"key": spec.key},
        )


def entry_write(*, spec: EntrySpec) -> JournalEntry:
    """Write one balanced entry and its lines in the caller's transaction (no audit, no postings:
    the callers below add those)."""
    check_balanced(spec)
    entry = JournalEntry.objects.create(
        key=spec.key,
        kind=spec.kind,
        legal_entity_id=spec.legal_entity_id,
        currency_id=spec.currency_id,
        date=spec.date,
        description=spec.description[:300],
        customer_id=spec.customer_id,
        source_document_id=spec.source_document_id,
        source_event_id=spec.source_event_id,
        reversal_of=spec.reversal_of,
    )
    JournalLine.objects.bulk_create(
        [
            JournalLine(
                entry=entry,
                position=i,
                account=ln.account,
                debit=ln.amount if ln.amount > 0 else ZERO,
                credit=-ln.amount if ln.amount < 0 else ZERO,
                currency_id=spec.currency_id,
                legal_entity_id=spec.legal_entity_id,
                customer_id=ln.customer_id,
                source_line_id=ln.source_line_id,
                description=ln.description[:500],
            )
            for i, ln in enumerate((ln for ln in spec.lines if ln.amount), start=1)
        ]
    )
    return entry


def _entry_lines(entry: JournalEntry) -> list[JournalLine]:
    return list(entry.lines.select_related("source_line").order_by("position"))


# --------------------------------------------------------------------------- postings


def _prefix(connection: ErpConnection) -> str:
    return connection.external_id_prefix


def external_id_of(connection: ErpConnection, document_type: str, ref: int) -> str:
    short = {
        DocumentType.INVOICE: "inv",
        DocumentType.CREDIT_MEMO: "cn",
        DocumentType.JOURNAL: "je",
        DocumentType.INVOICE_CANCEL: "void",
    }[DocumentType(document_type)]
    return f"{_prefix(connection)}-{short}-{ref}"


def journal_payload(entry: JournalEntry, lines: Sequence[JournalLine]) -> dict[str, Any]:
    return {
        "type": "journal",
        "date": str(entry.date),
        "currency": entry.currency_id,
        "description": entry.description,
        "lines": [
            {
                "account": ln.account,
                "debit": str(ln.debit),
                "credit": str(ln.credit),
                "customer_id": ln.customer_id,
                "description": ln.description,
            }
            for ln in lines
        ],
    }


def _postings_for(
    *,
    entry: JournalEntry,
    document: dict[str, Any] | None,
    invoice_id: int | None,
    credits_invoice_id: int | None,
    connections: Iterable[ErpConnection] | None = None,
    save: bool = True,
) -> list[Posting]:
    """One posting per connection of the entry's legal entity (documents mode; summarized
    connections receive the day's summary journal instead, see summaries), or per one of
    `connections` (a backfill); saved unless `save` is False."""
    out: list[Posting] = []
    if connections is None:
        connections = ErpConnection.objects.filter(
            legal_entity_id=entry.legal_entity_id, mode=PostingMode.DOCUMENTS
        ).order_by("id")
    lines = _entry_lines(entry)
    debit_total = sum((ln.debit for ln in lines), ZERO)
    for conn in connections:
        depends_on = None
        if entry.kind in (EntryKind.INVOICE, EntryKind.ADJUSTMENT) and document is not None:
            doc_type, ref, amount = DocumentType.INVOICE, invoice_id, Decimal(document["total"])
            payload: dict[str, Any] = {"type": "document", **document}
        elif entry.kind == EntryKind.CREDIT_MEMO and document is not None:
            doc_type, ref, amount = DocumentType.CREDIT_MEMO, invoice_id, Decimal(document["total"])
            payload = {"type": "document", **document}
            if credits_invoice_id is not None:
                credited = external_id_of(conn, DocumentType.INVOICE, credits_invoice_id)
                payload["credits_external_id"] = credited
                depends_on = Posting.objects.filter(connection=conn, external_id=credited).first()
        elif entry.kind == EntryKind.VOID and entry.reversal_of is not None and invoice_id:
            target = external_id_of(conn, DocumentType.INVOICE, invoice_id)
            doc_type, ref, amount = DocumentType.INVOICE_CANCEL, invoice_id, -debit_total
            payload = {"type": "cancel", "target_external_id": target, "reason": entry.description}
            depends_on = Posting.objects.filter(connection=conn, external_id=target).first()
        else:
            doc_type, ref, amount = DocumentType.JOURNAL, entry.pk, debit_total
            payload = journal_payload(entry, lines)
        assert ref is not None
        out.append(
            Posting(
                connection=conn,
                entry=entry,
                document_type=doc_type,
                external_id=external_id_of(conn, doc_type, ref),
                legal_entity_id=entry.legal_entity_id,
                customer_id=entry.customer_id,
                source_document_id=entry.source_document_id,
                amount=amount,
                currency_id=entry.currency_id,
                payload=payload,
                depends_on=depends_on,
            )
        )
        # a void's reversal lines undo the deferral its invoice's journal made (else the ERP
        # keeps the moved fee on deferred revenue for an invoice that no longer exists)
        if doc_type in (
            DocumentType.INVOICE,
            DocumentType.CREDIT_MEMO,
            DocumentType.INVOICE_CANCEL,
        ) and (conn.options or {}).get("defer_by_journal"):
            deferral = _deferral_journal(entry, lines)
            if deferral is not None:
                out.append(
                    Posting(
                        connection=conn,
                        entry=entry,
                        document_type=DocumentType.JOURNAL,
                        external_id=external_id_of(conn, DocumentType.JOURNAL, entry.pk),
                        legal_entity_id=entry.legal_entity_id,
                        customer_id=entry.customer_id,
                        source_document_id=entry.source_document_id,
                        amount=sum((Decimal(ln["debit"]) for ln in deferral["lines"]), ZERO),
                        currency_id=entry.currency_id,
                        payload=deferral,
                    )
                )
    if save:
        Posting.objects.bulk_create(out)
    return out


def _deferral_journal(entry: JournalEntry, lines: Sequence[JournalLine]) -> dict[str, Any] | None:
    """For an ERP whose invoice lines take revenue accounts only (Tryton): the document books
    every line to revenue, and this journal moves the deferred and prepaid parts from revenue to
    where our ledger holds them, so the ERP ends where our ledger is."""
    moved = []
    for ln in lines:
        if not ln.account.startswith("deferred_revenue") or ln.source_line_id is None:
            continue
        line = ln.source_line
        revenue = account_revenue(line.metric, line.component) if line else "revenue"
        net = ln.debit - ln.credit  # the ledger's side on the deferred account
        for account, value in ((ln.account, net), (revenue, -net)):
            moved.append(
                {
                    "account": account,
                    "debit": str(value) if value > 0 else "0",
                    "credit": str(-value) if value < 0 else "0",
                    "customer_id": None,
                    "description": f"deferral: {ln.description}"[:200],
                }
            )
    if not moved:
        return None
    return {
        "type": "journal",
        "date": str(entry.date),
        "currency": entry.currency_id,
        "description": f"deferral of {entry.description}",
        "lines": moved,
    }


def _record(
    *,
    spec: EntrySpec,
    actor: Actor,
    document: dict[str, Any] | None = None,
    invoice_id: int | None = None,
    credits_invoice_id: int | None = None,
) -> JournalEntry:
    entry = entry_write(spec=spec)
    for schedule in spec.schedules:
        RevenueSchedule.objects.create(deferral_entry=entry, **schedule)
    postings = _postings_for(
        entry=entry, document=document, invoice_id=invoice_id, credits_invoice_id=credits_invoice_id
    )
    audit_record(
        actor=actor,
        action="journal.write",
        obj=entry,
        after={
            "key": entry.key,
            "kind": entry.kind,
            "lines": len(spec.lines),
            "postings": [p.external_id for p in postings],
        },
    )
    return entry


# --------------------------------------------------------------------------- event handlers


def _local_date(ts_text: str, entity: LegalEntity) -> datetime.date:
    ts = parse_datetime(ts_text)
    if ts is None:
        raise ValueError(f"not a timestamp: {ts_text!r}")
    return local_date_of(ts=ts, tz=entity.timezone)


def _document_for_erp(
    payload: dict[str, Any], customer: Customer, deferred_lines: set[int]
) -> dict[str, Any]:
    """The canonical document (our accounts) a documents-mode connection receives; credit memos
    carry positive amounts, as connectors expect (base.Document)."""
    doc = payload["document"]
    sign = Decimal(-1) if doc["kind"] == "credit_memo" else Decimal(1)

    def money(value: str) -> str:
        return str(Decimal(value) * sign)

    return {
        "kind": "credit_memo" if doc["kind"] == "credit_memo" else "invoice",
        "number": doc["number"],
        "issue_date": doc["issue_date"],
        "due_date": None,
        "currency": doc["currency"],
        "customer_id": customer.pk,
        "description": doc.get("reason") or "",
        "subtotal": money(doc["subtotal"]),
        "tax_total": money(doc["tax_total"]),
        "total": money(doc["total"]),
        "lines": [
            {
                "source_line_id": ln["id"],
                "description": ln["description"],
                "quantity": ln["quantity"],
                "unit_price": ln["unit_price"],
                "amount": money(ln["amount"]),
                "metric": ln["metric"],
                "component": ln["component"],
                "deferred": ln["id"] in deferred_lines,
                "prepaid": ln["kind"] == "credit_drawdown",
            }
            for ln in payload["lines"]
            if Decimal(ln["amount"])
        ],
        "taxes": [
            {
                "rate": rate_key(t["rate"]),
                "name": t["name"],
                "base": money(t["taxable_amount"]),
                "amount": money(t["amount"]),
            }
            for t in payload["tax_lines"]
            if Decimal(t["amount"])
        ],
    }


def _deferred_account_of_original(line_id: int | None) -> tuple[str, RevenueSchedule | None]:
    """Where the credited original line went: its schedule if still deferred."""
    if line_id is None:
        return "", None
    schedule = RevenueSchedule.objects.filter(
        invoice_line_id=line_id, status=ScheduleStatus.SCHEDULED
    ).first()
    return ("deferred_revenue", schedule) if schedule else ("", None)


def _on_document(event: FinanceEvent, actor: Actor) -> JournalEntry | None:
    payload = event.payload
    doc = payload["document"]
    key = f"{event.type}:{doc['id']}"
    if JournalEntry.objects.filter(key=key).exists():
        return None
    entity = LegalEntity.objects.get(pk=doc["legal_entity_id"])
    customer = Customer.objects.get(pk=doc["customer_id"])
    period_end = datetime.date.fromisoformat(doc["period_end"])
    kind = {
        "invoice": EntryKind.INVOICE,
        "adjustment": EntryKind.ADJUSTMENT,
        "credit_memo": EntryKind.CREDIT_MEMO,
    }[doc["kind"]]
    lines: list[LineSpec] = [
        LineSpec(
            "receivable",
            Decimal(doc["total"]),
            f"{doc['number']} {customer.code}",
            customer_id=customer.pk,
        )
    ]
    schedules: list[dict[str, Any]] = []
    deferred: set[int] = set()
    for ln in payload["lines"]:
        amount = Decimal(ln["amount"])
        if not amount:
            continue
        revenue = account_revenue(ln["metric"], ln["component"])
        account = revenue
        recognize_on = None
        if ln["kind"] == "credit_drawdown":
            account = "deferred_revenue:prepaid"
        elif (
            ln["kind"] == "fixed_fee"
            and datetime.date.fromisoformat(ln["service_start"]) >= period_end
        ):
            account = "deferred_revenue"
            recognize_on = datetime.date.fromisoformat(ln["service_end"]) - datetime.timedelta(1)
        elif kind == EntryKind.CREDIT_MEMO:
            original_account, schedule = _deferred_account_of_original(ln.get("credits_line_id"))
            if schedule is not None:
                account, recognize_on = original_account, schedule.recognize_on
        if recognize_on is not None:
            deferred.add(ln["id"])
            schedules.append(
                {
                    "invoice_line_id": ln["id"],
                    "legal_entity_id": entity.pk,
                    "currency_id": doc["currency"],
                    "customer_id": customer.pk,
                    "revenue_account": revenue,
                    "metric": ln["metric"],
                    "component": ln["component"],
                    "amount": amount,
                    "recognize_on": recognize_on,
                }
            )
        lines.append(LineSpec(account, -amount, ln["description"], source_line_id=ln["id"]))
    for t in payload["tax_lines"]:
        if Decimal(t["amount"]):
            lines.append(
                LineSpec(f"tax_payable:{rate_key(t['rate'])}", -Decimal(t["amount"]), t["name"])
            )
    spec = EntrySpec(
        key=key,
        kind=kind,
        legal_entity_id=entity.pk,
        currency_id=doc["currency"],
        date=datetime.date.fromisoformat(doc["issue_date"]),
        description=f"{doc['kind'].replace('_', ' ')} {doc['number']}",
        lines=lines,
        customer_id=customer.pk,
        source_document_id=doc["id"],
        source_event_id=event.pk,
        schedules=schedules,
    )
    if len([ln for ln in lines if ln.amount]) < 2:
        return None  # a zero document: nothing to book, nothing to send
    return _record(
        spec=spec,
        actor=actor,
        document=_document_for_erp(payload, customer, deferred),
        invoice_id=doc["id"],
        credits_invoice_id=doc.get("credits_id") if kind == EntryKind.CREDIT_MEMO else None,
    )


def _reversal_spec(
    original: JournalEntry, *, key: str, kind: str, date: datetime.date, description: str
) -> EntrySpec:
    return EntrySpec(
        key=key,
        kind=kind,
        legal_entity_id=original.legal_entity_id,
        currency_id=original.currency_id,
        date=date,
        description=description,
        lines=[
            LineSpec(
                ln.account,
                ln.credit - ln.debit,
                f"reversal: {ln.description}"[:500],
                customer_id=ln.customer_id,
                source_line_id=ln.source_line_id,
            )
            for ln in _entry_lines(original)
        ],
        customer_id=original.customer_id,
        source_document_id=original.source_document_id,
        reversal_of=original,
    )


def _invoice_entry(doc: dict[str, Any], what: str) -> JournalEntry:
    """The entry that booked the invoice an event is about (booked before it: events in order)."""
    original = JournalEntry.objects.filter(
        source_document_id=doc["id"], kind__in=[EntryKind.INVOICE, EntryKind.ADJUSTMENT]
    ).first()
    if original is None:
        raise AppError(
            f"Invoice {doc['number']} was {what} but its journal entry is missing.",
            code=error_codes.NOT_FOUND,
        )
    return original


def _on_void(event: FinanceEvent, actor: Actor) -> JournalEntry | None:
    doc = event.payload["document"]
    key = f"invoice.voided:{doc['id']}"
    if JournalEntry.objects.filter(key=key).exists():
        return None
    original = _invoice_entry(doc, "voided")
    entity = LegalEntity.objects.get(pk=original.legal_entity_id)
    date = _local_date(doc["voided_at"], entity)
    spec = _reversal_spec(
        original,
        key=key,
        kind=EntryKind.VOID,
        date=date,
        description=f"void of {doc['number']}: {doc.get('reason', '')}",
    )
    spec.source_event_id = event.pk
    entry = _record(spec=spec, actor=actor, invoice_id=doc["id"])
    # Fees deferred by the voided invoice: not recognised any more; recognised ones reversed.
    for schedule in RevenueSchedule.objects.filter(deferral_entry=original).select_for_update():
        if schedule.status == ScheduleStatus.RECOGNIZED and schedule.recognition_entry:
            rr = schedule.recognition_entry
            _record(
                spec=_reversal_spec(
                    rr,
                    key=f"invoice.voided:{doc['id']}:recognition:{schedule.pk}",
                    kind=EntryKind.VOID,
                    date=date,
                    description=f"void of {doc['number']}: recognised revenue reversed",
                ),
                actor=actor,
            )
        schedule.status = ScheduleStatus.CANCELLED
        schedule.save(update_fields=["status"])
    return entry


def _on_paid(event: FinanceEvent, actor: Actor) -> JournalEntry | None:
    """Cash clearing against receivable, one entry per payment.

    `invoice.payment_recorded` (a partial payment) and `invoice.paid` (the payment that
    settles the balance) carry the payment itself; an `invoice.paid` written before payments
    were recorded (no `payment` key) books the invoice's total, as it always did.
    """
    doc = event.payload["document"]
    payment = event.payload.get("payment")
    original = _invoice_entry(doc, "paid")
    entity = LegalEntity.objects.get(pk=original.legal_entity_id)
    if payment is not None and "id" in payment:
        key = f"payment:{payment['id']}"
        amount = Decimal(payment["amount"])
        date = datetime.date.fromisoformat(payment["date"])
    else:
        key = f"invoice.paid:{doc['id']}"
        amount = Decimal(doc["total"])
        date = _local_date(doc["paid_at"], entity)
    if JournalEntry.objects.filter(key=key).exists():
        return None
    description = f"payment of {doc['number']}"
    spec = EntrySpec(
        key=key,
        kind=EntryKind.PAYMENT,
        legal_entity_id=entity.pk,
        currency_id=doc["currency"],
        date=date,
        description=description,
        lines=[
            LineSpec("cash_clearing", amount, description),
            LineSpec("receivable", -amount, description, customer_id=original.customer_id),
        ],
        customer_id=original.customer_id,
        source_document_id=doc["id"],
        source_event_id=event.pk,
    )
    return _record(spec=spec, actor=actor)


HANDLERS = {
    "invoice.finalized": _on_document,
    "credit_memo.issued": _on_document,
    "invoice.voided": _on_void,
    "invoice.paid": _on_paid,
    "invoice.payment_recorded": _on_paid,
}


# --------------------------------------------------------------------------- the consumer


@dataclass
class ConsumeResult:
    events: int = 0
    entries: int = 0
    last_event_id: int = 0
    stopped_at: int | None = None  # the event that could not be booked (a case says why)
    errors: list[str] = field(default_factory=list)


def ledger_consume(*, actor: Actor, limit: int = EVENT_BATCH) -> ConsumeResult:
    """Book the finance events after the cursor, one transaction per event.

    Stops at an event it cannot book (and opens a `ledger_event_failed` case naming it), so
    the ledger never skips a document and never books one out of order; everything before it
    is committed. Safe to run twice and concurrently (the cursor row is locked per event).
    """
    result = ConsumeResult()
    LedgerCursor.objects.get_or_create(name=CURSOR)
    cursor_pos = LedgerCursor.objects.get(name=CURSOR).last_event_id
    for event in finance_events(after_id=cursor_pos, limit=limit):
        try:
            with transaction.atomic():
                cursor = LedgerCursor.objects.select_for_update().get(name=CURSOR)
                if event.pk <= cursor.last_event_id:
                    continue  # another consumer booked it meanwhile
                handler = HANDLERS.get(event.type)
                if handler is not None and handler(event, actor) is not None:
                    result.entries += 1
                cursor.last_event_id = event.pk
                cursor.save(update_fields=["last_event_id", "updated_at"])
        except Exception as exc:  # noqa: BLE001 - a bad event becomes a case, never a crashed task
            message = exc.message if isinstance(exc, AppError) else f"{type(exc).__name__}: {exc}"
            log.exception("finance event %s could not be booked", event.pk)
            with transaction.atomic():
                case_open_or_update(
                    kind="ledger_event_failed",
                    fingerprint=f"ledger_event_failed:{event.pk}",
                    title=f"Finance event #{event.pk} ({event.type}) could not be booked",
                    actor=actor,
                    severity="high",
                    error_code=getattr(exc, "code", "") or "ledger_error",
                    error_message=message,
                    source=event,
                    legal_entity_id=event.legal_entity_id,
                    details={"event_id": event.pk, "type": event.type},
                )
            result.stopped_at = event.pk
            result.errors.append(message)
            break
        result.events += 1
        result.last_event_id = event.pk
    return result


def ledger_replay_from(*, event_id: int, actor: Actor) -> None:
    """Move the cursor back (to 0 to replay everything): booked events are skipped by key."""
    with transaction.atomic():
        cursor, _ = LedgerCursor.objects.select_for_update().get_or_create(name=CURSOR)
        before = cursor.last_event_id
        cursor.last_event_id = event_id
        cursor.save(update_fields=["last_event_id", "updated_at"])
        audit_record(
            actor=actor,
            action="ledger.cursor_moved",
            obj=cursor,
            before={"last_event_id": before},
            after={"last_event_id": event_id},
        )


# --------------------------------------------------------------------------- revenue schedules


def revenue_recognize_due(*, actor: Actor, today: datetime.date | None = None) -> int:
    """Recognise every scheduled fee whose service period has ended (recognize_on <= today):
    one entry per schedule, deferred revenue -> revenue, with its postings. Safe to run twice."""
    today = today or timezone.localdate()
    done = 0
    ids = list(
        RevenueSchedule.objects.filter(
            status=ScheduleStatus.SCHEDULED, recognize_on__lte=today
        ).values_list("pk", flat=True)[:RECOGNITION_BATCH]
    )
    for pk in ids:
        with transaction.atomic():
            schedule = RevenueSchedule.objects.select_for_update().get(pk=pk)
            if schedule.status != ScheduleStatus.SCHEDULED:
                continue
            entry = _record(
                spec=EntrySpec(
                    key=f"revenue.recognized:{schedule.pk}",
                    kind=EntryKind.REVENUE_RECOGNITION,
                    legal_entity_id=schedule.legal_entity_id,
                    currency_id=schedule.currency_id,
                    date=schedule.recognize_on,
                    description=f"revenue recognised: {schedule.component or schedule.metric}",
                    lines=[
                        LineSpec("deferred_revenue", schedule.amount, "recognised"),
                        LineSpec(schedule.revenue_account, -schedule.amount, "recognised"),
                    ],
                    customer_id=schedule.customer_id,
                    source_document_id=schedule.deferral_entry.source_document_id,
                ),
                actor=actor,
            )
            schedule.status = ScheduleStatus.RECOGNIZED
            schedule.recognition_entry = entry
            schedule.save(update_fields=["status", "recognition_entry"])
            done += 1
    return done


def ledger_balances(
    *, legal_entity_id: int, start: datetime.date, end: datetime.date
) -> dict[tuple[str, str], Decimal]:
    """(account, currency) -> debit - credit of entries dated in [start, end)."""
    out: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    rows = JournalLine.objects.filter(
        entry__legal_entity_id=legal_entity_id, entry__date__gte=start, entry__date__lt=end
    ).values_list("account", "currency_id", "debit", "credit")
    for account, cur, debit, credit in rows:
        out[(account, cur)] += debit - credit
    return dict(out)
