"""Every write of erp_sync: connections and mappings, the ledger writer, the outbox drain,
reconciliation. Import from the submodules or from here."""

from erp_sync.services.backfill import BackfillResult, postings_backfill
from erp_sync.services.connections import (
    account_mapping_delete,
    account_mapping_set,
    connection_create,
    connection_update,
    party_mapping_set,
)
from erp_sync.services.ledger import ledger_consume, ledger_replay_from, revenue_recognize_due
from erp_sync.services.outbox import (
    DrainResult,
    outbox_drain,
    posting_replay,
    postings_release_held,
)

__all__ = [
    "BackfillResult",
    "DrainResult",
    "account_mapping_delete",
    "account_mapping_set",
    "connection_create",
    "connection_update",
    "ledger_consume",
    "ledger_replay_from",
    "outbox_drain",
    "party_mapping_set",
    "posting_replay",
    "postings_backfill",
    "postings_release_held",
    "revenue_recognize_due",
]
