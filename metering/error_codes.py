"""Stable error codes of metering. A code is a promise to API clients: never rename one or change
its value (a StrEnum member is the str of its value: JSON bodies and stored rows are unchanged)."""

from enum import StrEnum


class MeteringErrorCode(StrEnum):
    # --- per event: in the `results` of an ingest response and in the dead letter ---------
    EVENT_MALFORMED = "event_malformed"  # not a JSON object
    MISSING_FIELD = "missing_field"  # a required field is absent or empty
    INVALID_FIELD = "invalid_field"  # a field has the wrong type or format
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_VALUE = "invalid_value"  # value is not a decimal number
    UNKNOWN_METRIC = "unknown_metric"
    METRIC_NOT_EFFECTIVE = "metric_not_effective"  # no version in force at the event time
    NEGATIVE_VALUE = "negative_value"  # a negative value for a metric that does not accept one
    VALUE_REQUIRED = "value_required"  # the metric aggregates a value and the event has none
    SCHEMA_VIOLATION = "schema_violation"  # properties break the metric version's JSON Schema
    EVENT_TOO_OLD = "event_too_old"
    EVENT_IN_FUTURE = "event_in_future"
    DUPLICATE_IN_REQUEST = "duplicate_in_request"  # not a rejection: a duplicate within one batch
    DUPLICATE = "duplicate"  # not a rejection: the event was received before (CSV import report)

    # --- per request ----------------------------------------------------------------------
    MALFORMED_REQUEST = "malformed_request"  # body is not JSON / not the documented shape
    BATCH_TOO_LARGE = "batch_too_large"
    EMPTY_BATCH = "empty_batch"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"

    # --- admin ----------------------------------------------------------------------------
    METRIC_EXISTS = "metric_exists"
    METRIC_INVALID = "metric_invalid"
    MAPPING_EXISTS = "mapping_exists"
    MAPPING_INVALID = "mapping_invalid"
    SUMMARY_CLOSED = "summary_closed"
    REJECTED_NOT_OPEN = "rejected_not_open"
    IMPORT_INVALID = "import_invalid"
    # --- taking the new version of a duplicate conflict (decision 51) ----------------------
    SUPERSESSION_INVALID = "supersession_invalid"  # the re-sent version cannot be taken
    SUPERSESSION_DONE = "supersession_done"  # that version was already taken
    SUPERSESSION_BILLED = "supersession_billed"  # the original is on a finalized invoice


class MeteringCaseKind(StrEnum):
    """Kinds of the exception cases metering opens (the queue filters on them)."""

    REJECTED = "usage_rejected"
    UNMAPPED = "unmapped_customer"
    CONFLICT = "duplicate_conflict"
