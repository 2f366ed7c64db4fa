from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Exceptions and audit trail"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from core.dbtriggers import sqlite_triggers_declare, sqlite_triggers_restore
        from exceptions.triggers import SQLITE_TRIGGERS

        sqlite_triggers_declare(self.label, SQLITE_TRIGGERS)
        post_migrate.connect(sqlite_triggers_restore, sender=self)
        # The workbench registers what applies a correction and what "retry now" does per kind;
        # it calls metering's and billing's services, which are loaded by now. Importing it here
        # keeps the core modules (models, services, policies) free of other apps.
        from exceptions.workbench import appliers, erp, supersede  # noqa: F401
