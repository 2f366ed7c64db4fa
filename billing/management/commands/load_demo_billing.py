from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.demo import load_demo_billing


class Command(BaseCommand):
    help = "Demo metrics, mappings, plans, contracts, a month of usage and last month's billing run (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        result = load_demo_billing()
        if result.events_sent:
            self.stdout.write(
                f"Sent {result.events_sent:,} demo usage events through the ingest service."
            )
        for line in result.runs:
            self.stdout.write(f"  billing run {line}")
        self.stdout.write(
            f"{result.invoices} invoices in the demo (US finalized, others drafts to approve)."
        )
