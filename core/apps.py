from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Master data and access"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        import core.api.schema  # noqa: F401  (registers the OpenAPI auth extension)
        from core.roles import sync_role_permissions

        # Permissions exist only after migrate; keep the role groups in step with them.
        post_migrate.connect(sync_role_permissions, sender=self)

        from axes.signals import user_locked_out

        from core.login_throttle import record_lock_out

        user_locked_out.connect(record_lock_out, dispatch_uid="core.login_throttle")
