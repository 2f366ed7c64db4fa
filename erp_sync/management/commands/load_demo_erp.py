from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from erp_sync.demo import load_demo_erp


class Command(BaseCommand):
    help = (
        "Demo ERP side: a Tryton connection per demo entity with its account mappings, last "
        "month finalized, a credit memo, a void and a payment, the ledger written and its "
        "postings queued for the worker; staged failures (idempotent)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        port = os.environ.get("TRYTON_PORT", "8010")
        parser.add_argument("--tryton-url", default=f"http://127.0.0.1:{port}")
        parser.add_argument("--database", default=os.environ.get("TRYTON_DB", "ledgerline"))
        parser.add_argument("--login", default=os.environ.get("TRYTON_API_LOGIN", "ledgerline"))
        parser.add_argument(
            "--no-tryton", action="store_true", help="Tryton is not running: stage nothing in it."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = load_demo_erp(
            tryton_url=options["tryton_url"],
            database=options["database"],
            login=options["login"],
            admin_password=None
            if options["no_tryton"]
            else os.environ.get("TRYTON_ADMIN_PASSWORD", "admin"),
        )
        for line in result.connections:
            self.stdout.write(f"  ERP connection {line}")
        for line in result.staged:
            self.stdout.write(f"  staged: {line}")
        for line in result.warnings:
            self.stdout.write(self.style.WARNING(f"  {line}"))
        self.stdout.write(
            f"{result.entries} journal entries written; {result.postings} postings in the outbox "
            "(the worker's drain sends them to Tryton within a minute)."
        )
        from django_q.tasks import async_task

        async_task("erp_sync.tasks.outbox_drain_task", task_name="demo: first drain")
