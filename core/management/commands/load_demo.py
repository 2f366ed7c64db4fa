from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.demo import DEMO_PASSWORD, load_demo_data
from core.models import ApiKey
from core.services import api_key_create
from core.actors import Actor


class Command(BaseCommand):
    help = "Load demo legal entities, customers, one user per role and a demo API key (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        users = load_demo_data()
        key_file = settings.VAR_DIR / "demo_api_key"
        if (
            not key_file.exists()
            or not ApiKey.objects.filter(name="demo", revoked_at__isnull=True).exists()
        ):
            issued = api_key_create(
                name="demo",
                scopes=[
                    "usage:write",
                    "postings:read",
                    "invoices:read",
                    "exceptions:read",
                    "admin",
                ],
                actor=Actor.system("demo data"),
            )
            key_file.write_text(issued.raw_key + "\n")
            key_file.chmod(0o600)
        self.stdout.write("Demo logins (password for all: %s):" % DEMO_PASSWORD)
        for u in users:
            self.stdout.write(f"  {u.username:<12} {u.role}")
        self.stdout.write(
            f"Demo API key (all scopes): {key_file.read_text().strip()}  (kept in {key_file})"
        )
