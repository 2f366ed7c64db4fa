from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import AppError
from core.services import api_key_create
from core.actors import Actor


class Command(BaseCommand):
    help = "Create an API key with the given scopes and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name", required=True, help="What the key is for, e.g. 'product-usage'."
        )
        parser.add_argument(
            "--scopes",
            required=True,
            help="Comma-separated: usage:write, postings:read, invoices:read, exceptions:read, admin.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            issued = api_key_create(
                name=options["name"], scopes=scopes, actor=Actor.system("manage.py create_api_key")
            )
        except AppError as exc:
            raise CommandError(exc.message) from exc
        self.stderr.write(
            f"Created API key '{issued.api_key.name}' with scopes {', '.join(issued.api_key.scopes)}."
        )
        self.stderr.write("Store it now: it is shown only this once.")
        self.stdout.write(issued.raw_key)
