"""manage.py erp_backfill_postings --connection NAME --since YYYY-MM-DD --reason TEXT: write the
postings a connection added (or switched to documents mode) later has not received for the
entries booked before it (erp_sync.services.postings_backfill; idempotent, audited)."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.actors import Actor
from core.errors import AppError
from erp_sync.models import ErpConnection
from erp_sync.services import postings_backfill


class Command(BaseCommand):
    help = (
        "Write the missing postings of an ERP connection for its legal entity's journal "
        "entries dated on or after --since (running it twice creates nothing new)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connection", required=True, help="the ERP connection's name")
        parser.add_argument("--since", required=True, help="first entry date, YYYY-MM-DD")
        parser.add_argument("--reason", required=True, help="why (kept in the audit entry)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            since = datetime.date.fromisoformat(options["since"])
        except ValueError:
            raise CommandError(f"--since: not a date (YYYY-MM-DD): {options['since']!r}") from None
        if not options["reason"].strip():
            raise CommandError("--reason: say why the postings are backfilled")
        conn = ErpConnection.objects.filter(name=options["connection"]).first()
        if conn is None:
            names = ", ".join(ErpConnection.objects.order_by("name").values_list("name", flat=True))
            raise CommandError(
                f"--connection: no ERP connection named {options['connection']!r} "
                f"(there are: {names or 'none'})"
            )
        try:
            result = postings_backfill(
                connection=conn,
                since=since,
                actor=Actor.system("manage.py erp_backfill_postings"),
                reason=options["reason"],
            )
        except AppError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"{conn.name}: {len(result.created)} posting(s) written, {result.existing} "
            f"entr{'y' if result.existing == 1 else 'ies'} had theirs already, "
            f"{len(result.skipped)} skipped"
        )
        for line in result.skipped:
            self.stdout.write(f"  skipped {line}")
