"""Stable error codes of erp_sync. A code is a promise to API clients: never rename one."""

UNBALANCED_ENTRY = "erp_unbalanced_entry"  # debits <> credits in some currency
INVALID_CONNECTION = "erp_invalid_connection"
INVALID_MAPPING = "erp_invalid_mapping"
MISSING_MAPPING = "erp_missing_mapping"  # an account or party the ERP needs is not mapped
POSTING_NOT_REPLAYABLE = "erp_posting_not_replayable"  # only failed / dead / held postings
REASON_REQUIRED = "erp_reason_required"
UNKNOWN_CONNECTOR = "erp_unknown_connector"
INVALID_FILTER = "erp_invalid_filter"
NOT_FOUND = "erp_not_found"
BACKFILL_NOT_DOCUMENTS = "erp_backfill_not_documents"  # summarized connections need none
