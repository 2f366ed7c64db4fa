from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exceptions.models import AuditEntry
from exceptions.services import audit_verify_chain


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain; exit non-zero naming the first broken entry. "
        "With --anchor FILE, also check that the chain still holds the head last exported to "
        "FILE (deleting the newest entries or truncating the table is then detected), and "
        "export the current head (seq and hash) to it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="FILE",
            help="a file outside the database (another host, write-once storage) holding the "
            "last exported head as JSON {seq, hash}; created on the first run",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit_verify_chain()
        if broken is not None:
            where = f"entry #{broken.seq}" + (f" (id {broken.entry_id})" if broken.entry_id else "")
            raise CommandError(
                f"Audit chain broken at {where}: {broken.problem}. {checked} entries before it are intact."
            )
        anchor = options.get("anchor")
        if anchor:
            self._check_and_export(Path(anchor))
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {checked} entries verified."))

    def _check_and_export(self, path: Path) -> None:
        if path.exists():
            try:
                last = json.loads(path.read_text())
                seq, digest = int(last["seq"]), str(last["hash"])
            except (ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"{path} is not an exported audit head: {exc}.") from exc
            if seq:
                held = AuditEntry.objects.filter(seq=seq).values_list("entry_hash", flat=True)
                if list(held) != [digest]:
                    raise CommandError(
                        f"The chain no longer holds entry #{seq} with the hash exported to {path} "
                        "(entries deleted, the table truncated or rewritten)."
                    )
        head = AuditEntry.objects.order_by("-seq").values_list("seq", "entry_hash").first()
        seq, digest = head if head is not None else (0, "")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": seq, "hash": digest}) + "\n")
        os.replace(tmp, path)
        self.stdout.write(f"Exported the head #{seq} to {path}.")
