"""CSV usage import: the upload page's queued job and `manage.py import_usage`."""

from __future__ import annotations

import csv
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import AppError
from core.models import ApiKey
from exceptions.services import audit_record
from metering import ingest
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringErrorCode
from metering.models import (
    ImportJob,
)
from metering.services.ingest import usage_ingest

CSV_COLUMNS = ("event_id", "source", "customer_ref", "metric", "timestamp")
CSV_BATCH = 1000  # rows per ingest batch: one transaction and one audit entry each
ERROR_REPORT_HEADER = ["row", "event_id", "status", "code", "message"]


@dataclass
class ImportProgress:
    rows: int = 0
    bytes_read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    held: int = 0


def _csv_lines(fileobj: IO[bytes], progress: ImportProgress) -> Iterator[str]:
    for raw in fileobj:
        progress.bytes_read += len(raw)
        yield raw.decode(
            "utf-8-sig" if progress.bytes_read == len(raw) else "utf-8", errors="replace"
        )


def _csv_event(row: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
    value = (row.get("value") or "").strip()
    event["value"] = value or None
    props = (row.get("properties") or "").strip()
    if props:
        try:
            event["properties"] = orjson.loads(props)
        except orjson.JSONDecodeError:
            event["_reject"] = (
                MeteringErrorCode.INVALID_FIELD,
                "The properties column is not valid JSON.",
            )
    return event


def usage_import_stream(
    *,
    fileobj: IO[bytes],
    actor: Actor,
    error_report: IO[str],
    api_key: ApiKey | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportProgress:
    """Ingest a CSV file batch by batch, never holding the whole file in memory.

    Columns: event_id, source, customer_ref, metric, timestamp[, value][, properties (JSON)].
    Every row not accepted is written to `error_report` with its row number, code and message.
    """
    progress = ImportProgress()
    reader = csv.DictReader(_csv_lines(fileobj, progress))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise AppError(
            f"The CSV file lacks the column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(CSV_COLUMNS)}[, value, properties].",
            code=MeteringErrorCode.IMPORT_INVALID,
        )
    writer = csv.writer(error_report)
    writer.writerow(ERROR_REPORT_HEADER)
    batch: list[tuple[Any, Any]] = []
    first_row = 2  # the header is row 1

    def flush() -> None:
        nonlocal batch, first_row
        if not batch:
            return
        result = usage_ingest(items=batch, actor=actor, api_key=api_key, channel="csv")
        for r in result.results:
            if r["status"] != ingest.ACCEPTED:
                writer.writerow(
                    [
                        first_row + r["index"],
                        r["event_id"] or "",
                        r["status"],
                        r.get("code", ""),
                        r.get("message", ""),
                    ]
                )
        for k in ("accepted", "duplicate", "rejected", "held"):
            setattr(progress, k, getattr(progress, k) + result.counts[k])
        progress.rows += len(batch)
        first_row += len(batch)
        batch = []
        if on_progress is not None:
            on_progress(progress)

    for row in reader:
        batch.append((_csv_event(row), dict(row)))
        if len(batch) >= CSV_BATCH:
            flush()
    flush()
    return progress


def import_job_create(*, upload: Any, user: Any, actor: Actor) -> ImportJob:
    """Keep the uploaded file and queue its ingestion (after commit)."""
    if not upload.name.lower().endswith(".csv"):
        raise AppError("Upload a .csv file.", code=MeteringErrorCode.IMPORT_INVALID)
    with transaction.atomic():
        job = ImportJob(filename=upload.name[:255], total_bytes=upload.size or 0, created_by=user)
        job.file.save(f"{uuid.uuid4().hex}.csv", upload, save=False)
        job.save()
        audit_record(
            actor=actor,
            action=MeteringAction.USAGE_IMPORT_QUEUED,
            obj=job,
            after={"filename": job.filename, "bytes": job.total_bytes},
        )
        transaction.on_commit(lambda: _enqueue_import(job.pk))
    return job


def _enqueue_import(job_id: int) -> None:
    from django_q.tasks import async_task

    async_task("metering.tasks.run_import_job", job_id, task_name=f"metering-import-{job_id}")


def import_job_run(*, job_id: int, actor: Actor) -> ImportJob:
    """Run a queued import (safe to run twice: a finished job is left alone, events are exactly-once)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status == ImportJob.Status.DONE:
        return job
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)

    def save_progress(p: ImportProgress) -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            processed_bytes=p.bytes_read,
            rows=p.rows,
            accepted=p.accepted,
            duplicate=p.duplicate,
            rejected=p.rejected,
            held=p.held,
        )

    report = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
    status, message = ImportJob.Status.DONE, ""
    progress = ImportProgress()
    try:
        with job.file.open("rb") as fh:
            progress = usage_import_stream(
                fileobj=fh, actor=actor, error_report=report, on_progress=save_progress
            )
    except AppError as exc:
        status, message = ImportJob.Status.FAILED, exc.message
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        job.status, job.message, job.finished_at = status, message, timezone.now()
        job.rows, job.accepted, job.duplicate = progress.rows, progress.accepted, progress.duplicate
        job.rejected, job.held = progress.rejected, progress.held
        job.processed_bytes = (
            job.total_bytes if status == ImportJob.Status.DONE else progress.bytes_read
        )
        report.seek(0)
        job.error_report.save(f"import-{job.pk}-errors.csv", File(report), save=False)
        report.close()
        job.save()
        audit_record(
            actor=actor,
            action=MeteringAction.USAGE_IMPORT_FINISHED,
            obj=job,
            after={
                "status": status,
                "rows": job.rows,
                "accepted": job.accepted,
                "duplicate": job.duplicate,
                "rejected": job.rejected,
                "held": job.held,
            },
            reason=message,
        )
    return job
