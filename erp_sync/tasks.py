"""django-q2 entry points: one line around a service each, safe to run twice or at once.

django-q2 only triggers the work; the ledger cursor and the outbox rows are the record. Each
drain stops after DRAIN_DEADLINE_SECONDS, below django-q2's `timeout` (300 s, itself below
`retry`), so a task is never handed out again while it still runs; a worker killed mid-drain
leaves leases that expire and the next scheduled drain takes over.
"""

from __future__ import annotations

import os

from core.actors import Actor
from erp_sync.services import ledger_consume, outbox_drain, revenue_recognize_due

#: A drain task returns after this long (django-q2's timeout is 300 s).
DRAIN_DEADLINE_SECONDS = 240


def ledger_consume_task() -> int:
    """Book the finance events after the cursor (scheduled every minute)."""
    return ledger_consume(actor=Actor.for_task("erp_sync.ledger")).events


def outbox_drain_task(connection_id: int | None = None) -> int:
    """Send whatever is due in the outbox (scheduled every minute)."""
    return outbox_drain(
        worker=f"q-{os.getpid()}",
        connection_id=connection_id,
        deadline_seconds=DRAIN_DEADLINE_SECONDS,
    ).claimed


def revenue_recognize_task() -> int:
    """Recognise fees billed in advance whose service period ended (scheduled daily)."""
    return revenue_recognize_due(actor=Actor.for_task("erp_sync.revenue"))


def reconcile_task() -> int:
    """Reconcile last month of every legal entity with its ERPs (scheduled daily)."""
    from erp_sync.services.reconciliation import reconcile_last_month

    return len(reconcile_last_month(actor=Actor.for_task("erp_sync.reconcile")))


def summaries_build_task() -> int:
    """Summarize yesterday's (and any earlier unsent) ledger for summarized-journal connections."""
    from erp_sync.services.summaries import summaries_build

    return len(summaries_build(actor=Actor.for_task("erp_sync.summaries")))
