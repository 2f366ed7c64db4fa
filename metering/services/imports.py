"""CSV usage import: the upload page's queued job and `manage.py import_usage`."""

from __future__ import annotations

import csv
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from metering.error_codes import MeteringCaseKind, MeteringErrorCode
from metering.models import (
    ImportJob,
)
from metering.services.ingest import EventOutcome, IngestResult, usage_ingest

CSV_COLUMNS = ("event_id", "source", "customer_ref", "metric", "timestamp")
CSV_OPTIONAL = ("value", "properties")
CSV_BATCH = 1000  # rows per ingest batch: one transaction and one audit entry each
ERROR_REPORT_HEADER = ["line", "event_id", "status", "code", "message"]
ENCODINGS = ("utf-8", "cp1252", "iso-8859-1")  # what the upload page offers


@dataclass
class ImportProgress:
    rows: int = 0
    bytes_read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    held: int = 0
    warnings: list[str] = field(default_factory=list)


def csv_template() -> str:
    """The file to start from: the header and one example row."""
    return (
        ",".join(CSV_COLUMNS + CSV_OPTIONAL)
        + '\r\nevt-0001,shop,acct_42,api_calls,2026-11-01T12:00:00Z,3,"{""region"": ""eu""}"\r\n'
    )


def import_source(filename: str) -> str:
    """The source a row without one is counted under (control totals, dead letter, cases)."""
    return f"csv:{filename}"[: ingest.MAX_LEN["source"]]


def _check_encoding(fileobj: IO[bytes], encoding: str) -> None:
    """Refuse, before any row is ingested, a file that is not in `encoding`: with the line and the
    byte where it stops being so (a replaced byte would make an id no mapping ever matches)."""
    if encoding not in ENCODINGS:
        raise AppError(
            f"Unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}.",
            code=MeteringErrorCode.IMPORT_INVALID,
        )
    offset = 0
    for line_no, raw in enumerate(fileobj, 1):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise AppError(
                f"Line {line_no} is not {encoding}: byte {exc.start + 1} of the line (byte "
                f"{offset + exc.start + 1} of the file) is {raw[exc.start : exc.start + 1]!r}. "
                "Save the file as UTF-8, or pick the encoding it was written in.",
                code=MeteringErrorCode.IMPORT_INVALID,
            ) from exc
        offset += len(raw)
    fileobj.seek(0)


def check_header(names: list[str]) -> list[str]:
    """Refuse a header without the columns a row needs (naming them and the whole expected header);
    return a warning naming the columns that are not read."""
    names = [n.strip() for n in names]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise AppError(
            f"The CSV file lacks the column(s) {', '.join(missing)}; its header must be "
            f"{','.join(CSV_COLUMNS)} (then value and properties, which may be empty). The import "
            "page has a template file.",
            code=MeteringErrorCode.IMPORT_INVALID,
        )
    extra = [n for n in names if n not in CSV_COLUMNS + CSV_OPTIONAL]
    if extra:
        return [f"Column(s) {', '.join(extra)} are not read (not part of a usage event)."]
    return []


def _csv_lines(fileobj: IO[bytes], progress: ImportProgress, encoding: str) -> Iterator[str]:
    first = "utf-8-sig" if encoding == "utf-8" else encoding  # a BOM is not part of the header
    for raw in fileobj:
        progress.bytes_read += len(raw)
        yield raw.decode(first if progress.bytes_read == len(raw) else encoding)


def _csv_event(row: dict[str, str], source: str) -> dict[str, Any]:
    event: dict[str, Any] = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
    value = (row.get("value") or "").strip()
    event["value"] = value or None
    props = (row.get("properties") or "").strip()
    if not event["source"]:
        event["source"] = source
        event["_reject"] = (
            MeteringErrorCode.MISSING_FIELD,
            f"The row has no 'source'; it is counted under the import's source {source!r}.",
        )
    elif props:
        try:
            event["properties"] = orjson.loads(props)
        except orjson.JSONDecodeError:
            event["_reject"] = (
                MeteringErrorCode.INVALID_FIELD,
                "The properties column is not valid JSON.",
            )
    return event


def _report_code(outcome: EventOutcome, result: IngestResult) -> tuple[str, str]:
    """The code and message of a row not accepted: a rejection's own, and for a duplicate or a held
    row what happened to it (a conflicting duplicate must not read like a harmless retry)."""
    index, status = outcome["index"], outcome["status"]
    if status == ingest.REJECTED:
        return outcome.get("code", ""), outcome.get("message", "")
    if status == ingest.HELD:
        c = result.candidates[index]
        return MeteringCaseKind.UNMAPPED, (
            f"No customer is mapped for {c.source}:{c.customer_ref}; the event is held until a "
            "mapping is added."
        )
    if index in result.conflicting:
        return MeteringCaseKind.CONFLICT, (
            "Already received with different content: the first one stands, and an exception "
            "case is open for finance to decide."
        )
    if index in result.in_batch:
        return MeteringErrorCode.DUPLICATE_IN_REQUEST, (
            "An earlier row of this file has the same source, event_id and content: counted once."
        )
    return MeteringErrorCode.DUPLICATE, (
        "Already received with the same content (an earlier import or request): counted once."
    )


def usage_import_stream(
    *,
    fileobj: IO[bytes],
    actor: Actor,
    error_report: IO[str],
    api_key: ApiKey | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
    encoding: str = "utf-8",
    source: str = "csv",
) -> ImportProgress:
    """Ingest a CSV file batch by batch, never holding the whole file in memory.

    Columns: event_id, source, customer_ref, metric, timestamp[, value][, properties (JSON)].
    The file is first read through once to check its encoding (nothing is ingested from a file
    that is not in it). Every row not accepted is written to `error_report` with the file's line
    number where the row starts, its code and message. `source`: what a row without one is counted
    under.
    """
    _check_encoding(fileobj, encoding)
    progress = ImportProgress()
    reader = csv.reader(_csv_lines(fileobj, progress, encoding))
    header = next(reader, None)
    progress.warnings = check_header(header or [])
    names = [n.strip() for n in header or []]
    writer = csv.writer(error_report)
    writer.writerow(ERROR_REPORT_HEADER)
    batch: list[tuple[Any, Any]] = []
    lines: list[int] = []  # the file line each row of the batch starts on

    def flush() -> None:
        nonlocal batch, lines
        if not batch:
            return
        result = usage_ingest(items=batch, actor=actor, api_key=api_key, channel="csv")
        for r in result.results:
            if r["status"] != ingest.ACCEPTED:
                code, message = _report_code(r, result)
                writer.writerow(
                    [lines[r["index"]], r["event_id"] or "", r["status"], code, message]
                )
        for k in ("accepted", "duplicate", "rejected", "held"):
            setattr(progress, k, getattr(progress, k) + result.counts[k])
        progress.rows += len(batch)
        batch, lines = [], []
        if on_progress is not None:
            on_progress(progress)

    ends = reader.line_num  # the line the previous row (or the header) ended on
    for fields in reader:
        starts, ends = ends + 1, reader.line_num
        if not fields:
            continue  # a blank line is not a row
        row = dict(zip(names, fields, strict=False))
        batch.append((_csv_event(row, source), row))
        lines.append(starts)
        if len(batch) >= CSV_BATCH:
            flush()
    flush()
    return progress


def import_job_create(
    *, upload: Any, user: Any, actor: Actor, encoding: str = "utf-8"
) -> ImportJob:
    """Check the uploaded file (encoding, header) and keep it, and queue its ingestion (after
    commit). A file that cannot be imported is refused here, not after it was queued."""
    if not upload.name.lower().endswith(".csv"):
        raise AppError("Upload a .csv file.", code=MeteringErrorCode.IMPORT_INVALID)
    upload.seek(0)
    _check_encoding(upload, encoding)
    first = upload.readline().decode("utf-8-sig" if encoding == "utf-8" else encoding)
    warnings = check_header(next(csv.reader([first]), []))
    upload.seek(0)
    with transaction.atomic():
        job = ImportJob(
            filename=upload.name[:255],
            total_bytes=upload.size or 0,
            created_by=user,
            encoding=encoding,
            message=" ".join(warnings),
        )
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
                fileobj=fh,
                actor=actor,
                error_report=report,
                on_progress=save_progress,
                encoding=job.encoding,
                source=import_source(job.filename),
            )
    except AppError as exc:
        status, message = ImportJob.Status.FAILED, exc.message
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        message = " ".join(m for m in (message, *progress.warnings) if m)
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
