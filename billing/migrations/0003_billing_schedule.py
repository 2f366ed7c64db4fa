"""The hourly django-q2 schedule that bills every month whose grace window has passed.

The task is safe to run twice: a month already billed creates nothing new.
"""

from typing import Any

from django.db import migrations

NAME = "billing: bill closed months"


def create(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "billing.tasks.billing_runs_due", "schedule_type": "H", "repeats": -1},
    )


def remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_immutability_triggers"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
