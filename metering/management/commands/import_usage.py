"""manage.py import_usage FILE.csv: stream a usage CSV through the ingest path, with a progress bar."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import AppError
from core.actors import Actor
from metering.services import ENCODINGS, ImportProgress, import_source, usage_import_stream


class Command(BaseCommand):
    help = (
        "Ingest usage events from a CSV file (columns event_id, source, customer_ref, metric, timestamp"
        "[, value][, properties]) in batches, without loading it into memory. Rows not accepted are written "
        "to an error report (FILE.errors.csv by default)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--errors", type=Path, help="Where to write the per-row error report.")
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw the progress bar."
        )
        parser.add_argument(
            "--encoding",
            choices=ENCODINGS,
            default="utf-8",
            help="The file's encoding (a byte it does not allow stops the import before any row).",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        path: Path = opts["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        total = os.path.getsize(path) or 1
        errors_path: Path = opts["errors"] or path.with_suffix(".errors.csv")
        show = not opts["no_progress"]

        def progress(p: ImportProgress) -> None:
            if show:
                done = min(1.0, p.bytes_read / total)
                bar = "#" * int(done * 30)
                sys.stderr.write(
                    f"\r[{bar:<30}] {done:6.1%}  {p.rows:,} rows  {p.accepted:,} accepted  "
                    f"{p.duplicate:,} duplicate  {p.rejected:,} rejected  {p.held:,} held"
                )
                sys.stderr.flush()

        actor = Actor.system(f"import_usage {path.name}")
        try:
            with (
                path.open("rb") as fh,
                errors_path.open("w", encoding="utf-8", newline="") as report,
            ):
                result = usage_import_stream(
                    fileobj=fh,
                    actor=actor,
                    error_report=report,
                    on_progress=progress,
                    encoding=opts["encoding"],
                    source=import_source(path.name),
                )
        except AppError as exc:
            raise CommandError(exc.message) from exc
        if show:
            sys.stderr.write("\n")
        for warning in result.warnings:
            self.stderr.write(f"Warning: {warning}")
        self.stdout.write(
            f"{result.rows:,} rows: {result.accepted:,} accepted, {result.duplicate:,} duplicate, "
            f"{result.rejected:,} rejected, {result.held:,} held. Error report: {errors_path}"
        )
