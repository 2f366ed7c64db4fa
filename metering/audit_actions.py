"""Audit action names written by metering. Values are kept: the audit page filters on them."""

from enum import StrEnum


class MeteringAction(StrEnum):
    METRIC_CREATE = "metric.create"
    METRIC_VERSION_ADD = "metric.version_add"
    MAPPING_CREATE = "mapping.create"
    USAGE_INGEST = "usage.ingest"
    USAGE_INGEST_REFUSED = "usage.ingest_refused"
    USAGE_RELEASE = "usage.release"
    USAGE_RESUBMIT = "usage.resubmit"
    USAGE_SUPERSEDE = "usage.supersede"
    USAGE_SUMMARIZE = "usage.summarize"
    USAGE_SUMMARIES_CLOSE = "usage.summaries_close"
    USAGE_IMPORT_QUEUED = "usage.import_queued"
    USAGE_IMPORT_FINISHED = "usage.import_finished"
