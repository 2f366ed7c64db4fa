"""The django-q2 schedule that refreshes open usage summaries every 5 minutes.

The task is incremental and safe to run twice.
"""

from typing import Any

from django.db import migrations

NAME = "metering: refresh usage summaries"


def create(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "metering.tasks.refresh_usage_summaries",
            "schedule_type": "I",
            "minutes": 5,
            "repeats": -1,
        },
    )


def remove(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
