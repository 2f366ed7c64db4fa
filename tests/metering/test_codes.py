"""metering's error codes, case kinds and audit action names are promises (API clients, the
queue's and the audit page's filters): their values never change."""

from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringCaseKind, MeteringErrorCode


def test_the_error_codes_keep_their_values() -> None:
    assert sorted(MeteringErrorCode) == sorted(
        [
            "event_malformed",
            "missing_field",
            "invalid_field",
            "invalid_timestamp",
            "invalid_value",
            "unknown_metric",
            "metric_not_effective",
            "value_required",
            "negative_value",
            "schema_violation",
            "event_too_old",
            "event_in_future",
            "duplicate_in_request",
            "duplicate",
            "malformed_request",
            "batch_too_large",
            "empty_batch",
            "unsupported_media_type",
            "metric_exists",
            "metric_invalid",
            "mapping_exists",
            "mapping_invalid",
            "summary_closed",
            "rejected_not_open",
            "import_invalid",
            "supersession_invalid",
            "supersession_done",
            "supersession_billed",
        ]
    )
    assert sorted(MeteringCaseKind) == ["duplicate_conflict", "unmapped_customer", "usage_rejected"]


def test_the_audit_actions_keep_their_values() -> None:
    assert sorted(MeteringAction) == sorted(
        [
            "metric.create",
            "metric.version_add",
            "mapping.create",
            "usage.ingest",
            "usage.ingest_refused",
            "usage.release",
            "usage.resubmit",
            "usage.supersede",
            "usage.summarize",
            "usage.summaries_close",
            "usage.import_queued",
            "usage.import_finished",
        ]
    )
    # a member is its value, wherever it is written (JSON bodies, audit rows and their hashes)
    written: str = MeteringAction.USAGE_INGEST
    assert written == "usage.ingest"
    assert f"{MeteringErrorCode.EVENT_TOO_OLD}" == "event_too_old"
