"""Every write of metering, one module per sub-domain; each service opens its transaction and
writes its audit entry inside it. Every name is re-exported here: `from metering.services import
usage_ingest` is how the rest of the project calls them."""

from __future__ import annotations

from metering.services.dead_letter import (
    _dead_letter,
    _raw_for_storage,
    dead_letter_request,
)
from metering.services.imports import (
    CSV_OPTIONAL,
    ENCODINGS,
    check_header,
    csv_template,
    import_source,
    CSV_BATCH,
    CSV_COLUMNS,
    ERROR_REPORT_HEADER,
    ImportProgress,
    _csv_event,
    _csv_lines,
    _enqueue_import,
    import_job_create,
    import_job_run,
    usage_import_stream,
)
from metering.services.ingest import (
    _MONTH,
    _TS_ISO,
    STALE_RETRIES,
    EventOutcome,
    IngestCounts,
    IngestItem,
    IngestResult,
    _conflict_raw,
    _ingest_store,
    _open_unmapped_cases,
    _record_conflicts,
    _validate,
    rejected_event_resubmit,
    unmapped_fingerprint,
    usage_ingest,
)
from metering.services.intake import (
    IngestRequest,
    LagoIntake,
    events_intake,
    lago_batch_intake,
    lago_event_intake,
)
from metering.services.mappings import (
    customer_mapping_create,
    held_events_release,
)
from metering.services.metrics import (
    _check_metric_version,
    _metric_version_snapshot,
    metric_create,
    metric_version_add,
)
from metering.services.summaries import (
    LATE_USAGE_LOOKBACK_DAYS,
    usage_summaries_close,
    usage_summaries_refresh,
    usage_summarize_window,
)
from metering.services.supersessions import (
    supersession_check,
    usage_event_supersede,
)
from metering.services.tallies import (
    TALLY_COLUMNS,
    _tally_add,
)

__all__ = [
    "CSV_OPTIONAL",
    "ENCODINGS",
    "check_header",
    "csv_template",
    "import_source",
    "EventOutcome",
    "IngestCounts",
    "IngestItem",
    "IngestRequest",
    "LagoIntake",
    "events_intake",
    "lago_batch_intake",
    "lago_event_intake",
    "_metric_version_snapshot",
    "_check_metric_version",
    "metric_create",
    "metric_version_add",
    "usage_summarize_window",
    "usage_summaries_close",
    "IngestResult",
    "STALE_RETRIES",
    "usage_ingest",
    "_TS_ISO",
    "_MONTH",
    "_validate",
    "_ingest_store",
    "_dead_letter",
    "_raw_for_storage",
    "dead_letter_request",
    "_open_unmapped_cases",
    "unmapped_fingerprint",
    "_record_conflicts",
    "_conflict_raw",
    "TALLY_COLUMNS",
    "_tally_add",
    "customer_mapping_create",
    "held_events_release",
    "rejected_event_resubmit",
    "supersession_check",
    "usage_event_supersede",
    "LATE_USAGE_LOOKBACK_DAYS",
    "usage_summaries_refresh",
    "CSV_COLUMNS",
    "CSV_BATCH",
    "ERROR_REPORT_HEADER",
    "ImportProgress",
    "_csv_lines",
    "_csv_event",
    "usage_import_stream",
    "import_job_create",
    "_enqueue_import",
    "import_job_run",
]
