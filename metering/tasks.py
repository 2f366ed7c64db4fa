"""django-q2 entry points of metering: thin, safe to run twice."""

from __future__ import annotations

from core.actors import Actor
from metering.services import import_job_run, usage_summaries_refresh


def refresh_usage_summaries() -> int:
    """Scheduled every 5 minutes (migration 0002): refresh open usage summaries incrementally."""
    return usage_summaries_refresh(actor=Actor.for_task("metering.refresh_usage_summaries"))


def run_import_job(job_id: int) -> None:
    """Ingest an uploaded CSV file (the upload page enqueues this)."""
    import_job_run(job_id=job_id, actor=Actor.for_task("metering.import"))
