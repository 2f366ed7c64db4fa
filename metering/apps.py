from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from core.dbtriggers import sqlite_triggers_declare, sqlite_triggers_restore
        from metering.triggers import SQLITE_TRIGGERS

        sqlite_triggers_declare(self.label, SQLITE_TRIGGERS)
        post_migrate.connect(sqlite_triggers_restore, sender=self)
