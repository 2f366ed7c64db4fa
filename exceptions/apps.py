from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    name = "exceptions"
    verbose_name = "Exceptions and audit trail"

    def ready(self) -> None:
        # The workbench registers what applies a correction and what "retry now" does per kind;
        # it calls metering's and billing's services, which are loaded by now. Importing it here
        # keeps the core modules (models, services, policies) free of other apps.
        from exceptions.workbench import appliers, erp, supersede  # noqa: F401
