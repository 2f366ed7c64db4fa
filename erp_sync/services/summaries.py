"""Summarized journals: for a connection in `summarized_journals` mode, one balanced journal per
legal entity, day and currency, totalled per account from our ledger, instead of documents.

`summaries_build` collects every entry of the entity not yet carried to the connection, dated
before today (the entity's local date), groups them by date and currency and writes one
`Posting` per group with its `SummaryMember` rows in one transaction; the unique (connection,
entry) constraint means no amount reaches the ERP twice, and documents mode and summarized mode
never both send the same amount (a connection has one mode). Late entries dated on a day
already summarized go into a further summary of that day (its external id names its first
entry). Safe to run twice.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.periods import local_date_of
from core.actors import Actor
from erp_sync.models import (
    DocumentType,
    ErpConnection,
    JournalEntry,
    JournalLine,
    Posting,
    PostingMode,
    SummaryMember,
)
from exceptions.services import audit_record

ZERO = Decimal(0)


def summaries_build(*, actor: Actor, now: datetime.datetime | None = None) -> list[Posting]:
    now = now or timezone.now()
    out: list[Posting] = []
    for conn in ErpConnection.objects.filter(mode=PostingMode.SUMMARIZED_JOURNALS).select_related(
        "legal_entity"
    ):
        today = local_date_of(ts=now, tz=conn.legal_entity.timezone)
        with transaction.atomic():
            ErpConnection.objects.select_for_update().get(pk=conn.pk)  # one builder at a time
            done = SummaryMember.objects.filter(connection=conn).values("entry_id")
            entries = list(
                JournalEntry.objects.filter(legal_entity_id=conn.legal_entity_id, date__lt=today)
                .exclude(pk__in=done)
                .order_by("id")
            )
            groups: dict[tuple[datetime.date, str], list[JournalEntry]] = defaultdict(list)
            for entry in entries:
                groups[(entry.date, entry.currency_id)].append(entry)
            for (day, currency), members in sorted(groups.items()):
                totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
                for account, debit, credit in JournalLine.objects.filter(
                    entry__in=members
                ).values_list("account", "debit", "credit"):
                    totals[account] += debit - credit
                lines = [
                    {
                        "account": account,
                        "debit": str(v) if v > 0 else "0",
                        "credit": str(-v) if v < 0 else "0",
                        "customer_id": None,
                        "description": f"{account} {day}",
                    }
                    for account, v in sorted(totals.items())
                    if v
                ]
                debit_total = sum((v for v in totals.values() if v > 0), ZERO)
                external_id = (
                    f"{conn.external_id_prefix}-sum-{conn.legal_entity.code}-{day:%Y%m%d}-"
                    f"{currency}-{members[0].pk}"
                )
                posting = Posting.objects.create(
                    connection=conn,
                    document_type=DocumentType.JOURNAL,
                    external_id=external_id,
                    legal_entity_id=conn.legal_entity_id,
                    amount=debit_total,
                    currency_id=currency,
                    payload={
                        "type": "journal",
                        "date": str(day),
                        "currency": currency,
                        "description": f"Ledgerline {conn.legal_entity.code} {day} ({len(members)} entries)",
                        "lines": lines,
                    },
                    # nothing to send when the day nets to zero on every account
                    **({"status": "posted", "posted_at": now} if not lines else {}),
                )
                SummaryMember.objects.bulk_create(
                    [SummaryMember(connection=conn, entry=e, posting=posting) for e in members]
                )
                audit_record(
                    actor=actor,
                    action="journal.summarize",
                    obj=posting,
                    after={"entries": [e.pk for e in members], "lines": len(lines)},
                )
                out.append(posting)
    return out
