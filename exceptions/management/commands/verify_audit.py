from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from exceptions.services import audit_verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exit non-zero naming the first broken entry."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit_verify_chain()
        if broken is not None:
            where = f"entry #{broken.seq}" + (f" (id {broken.entry_id})" if broken.entry_id else "")
            raise CommandError(
                f"Audit chain broken at {where}: {broken.problem}. {checked} entries before it are intact."
            )
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} entries verified."))
