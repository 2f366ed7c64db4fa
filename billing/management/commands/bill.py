"""manage.py bill --period 2026-11 [--entity CODE] [--finalize]: run billing with a progress bar."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import services
from billing.periods import parse_period
from core.errors import AppError
from core.models import LegalEntity
from core.actors import Actor

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Bill a closed month: rate every contract into draft invoices (and optionally finalize them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="The month, YYYY-MM.")
        parser.add_argument("--entity", help="Legal entity code (default: every entity).")
        parser.add_argument(
            "--finalize", action="store_true", help="Finalize every draft of the run afterwards."
        )

    def _bar(self, label: str) -> Any:
        def show(done: int, total: int) -> None:
            filled = BAR_WIDTH if not total else int(BAR_WIDTH * done / total)
            pct = 100 if not total else int(100 * done / total)
            self.stdout.write(
                f"\r{label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {pct:3d}%",
                ending="",
            )
            if done >= total:
                self.stdout.write("")
            sys.stdout.flush()

        return show

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            month = parse_period(opts["period"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        entities = LegalEntity.objects.order_by("code")
        if opts.get("entity"):
            entities = entities.filter(code=opts["entity"])
            if not entities:
                raise CommandError(f"No legal entity with code {opts['entity']!r}.")
        actor = Actor.system("manage.py bill")
        for entity in entities:
            try:
                run = services.billing_run_request(legal_entity=entity, month=month, actor=actor)
                run = services.billing_run_execute(
                    run_id=run.pk,
                    actor=actor,
                    progress=self._bar(f"{entity.code} {run.label} rating"),
                )
            except AppError as exc:
                raise CommandError(f"{entity.code}: {exc.message} ({exc.code})") from None
            outcome = run.outcome  # this execution's counts, not the run's running totals
            self.stdout.write(
                f"{entity.code} {run.label}: {outcome.drafted} invoice(s), "
                f"{outcome.corrected} correction(s) drafted, "
                f"{len(outcome.failed_cases)} failed"
            )
            for case in outcome.failed_cases:
                self.stdout.write(f"  case {case.pk}: {case.title}")
            if opts["finalize"]:
                done = services.billing_run_finalize(
                    run=run,
                    actor=actor,
                    progress=self._bar(f"{entity.code} {run.label} finalizing"),
                )
                self.stdout.write(f"{entity.code} {run.label}: {len(done)} document(s) finalized")
