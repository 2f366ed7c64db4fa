"""The django-q2 schedules of the exception queue: automatic retries and escalation by age.

Both tasks are safe to run twice.
"""

from typing import Any

from django.db import migrations

SCHEDULES = {
    "exceptions: auto-retry cases": ("exceptions.tasks.auto_retry_cases", 5),
    "exceptions: escalate cases by age": ("exceptions.tasks.escalate_cases", 15),
}


def create(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1},
        )


def remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name__in=list(SCHEDULES)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions", "0003_workbench"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
