"""The django-q2 schedules of erp_sync: book finance events and drain the outbox every minute,
recognise deferred revenue and reconcile daily. Every task is safe to run twice."""

from typing import Any

from django.db import migrations

SCHEDULES = {
    "erp_sync: book finance events": ("erp_sync.tasks.ledger_consume_task", "I", 1),
    "erp_sync: drain the outbox": ("erp_sync.tasks.outbox_drain_task", "I", 1),
    "erp_sync: recognise deferred revenue": ("erp_sync.tasks.revenue_recognize_task", "D", None),
    "erp_sync: reconcile last month": ("erp_sync.tasks.reconcile_task", "D", None),
    "erp_sync: summarize journals": ("erp_sync.tasks.summaries_build_task", "H", None),
}


def create(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, kind, minutes) in SCHEDULES.items():
        defaults: dict[str, Any] = {"func": func, "schedule_type": kind, "repeats": -1}
        if minutes:
            defaults["minutes"] = minutes
        Schedule.objects.update_or_create(name=name, defaults=defaults)


def remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("erp_sync", "0002_ledger_triggers"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
