"""Create the event table's monthly partitions ahead of time (issue 12, item 5).

The production role does not own the tables, so it cannot create partitions on demand: without
this, events of a new month would pile into the default partition. Run it as the tables' owner
after `migrate` and then monthly (cron, or a scheduled task run with the owner's DATABASE_URL).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from metering import partitions


def months_around(today: datetime, back: int, ahead: int) -> list[tuple[int, int]]:
    """(year, month) from `back` months before today's month to `ahead` months after it."""
    index = today.year * 12 + today.month - 1
    return [divmod(i, 12) for i in range(index - back, index + ahead + 1)]


class Command(BaseCommand):
    help = "Create the usage event table's monthly partitions for the coming months (PostgreSQL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ahead", type=int, default=3, help="months after this one (3)")
        parser.add_argument("--back", type=int, default=1, help="months before this one (1)")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self.stdout.write("Not PostgreSQL: the event table has no partitions.")
            return
        if options["ahead"] < 0 or options["back"] < 0:
            raise CommandError("--ahead and --back are numbers of months, 0 or more.")
        months = [
            (y, m + 1)
            for y, m in months_around(datetime.now(UTC), options["back"], options["ahead"])
        ]
        partitions.ensure_months(months)
        with connection.cursor() as cur:
            missing = []
            for year, month in months:
                cur.execute("SELECT to_regclass(%s)", [partitions.partition_name(year, month)])
                if cur.fetchone()[0] is None:
                    missing.append(partitions.partition_name(year, month))
        if missing:
            raise CommandError(
                f"Not created: {', '.join(missing)} (run this as the tables' owner; see the log)."
            )
        first, last = months[0], months[-1]
        self.stdout.write(
            self.style.SUCCESS(
                f"Partitions {first[0]}-{first[1]:02d} to {last[0]}-{last[1]:02d} exist."
            )
        )
