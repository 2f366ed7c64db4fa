"""Supersession of an accepted event by the new version of a duplicate conflict (decision 51).

Append-only on PostgreSQL, like the events it links: a supersession is never edited or undone.
"""

import django.db.models.deletion
from django.db import migrations, models

from core.dbtriggers import append_only


class Migration(migrations.Migration):
    dependencies = [
        ("exceptions", "0010_case_counts_per_statement"),
        ("metering", "0010_sqlite_metric_version_triggers"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventSupersession",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("source", models.CharField(max_length=100)),
                ("event_id", models.CharField(max_length=200)),
                ("original_seq", models.BigIntegerField(unique=True)),
                ("replacement_seq", models.BigIntegerField(unique=True)),
                (
                    "replacement_hash",
                    models.CharField(
                        help_text="content_hash of the replacement: its redelivery is a duplicate.",
                        max_length=32,
                    ),
                ),
                ("reason", models.TextField()),
                ("actor_label", models.CharField(max_length=200)),
                ("superseded_at", models.DateTimeField()),
                (
                    "case",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="exceptions.exceptioncase",
                    ),
                ),
                (
                    "conflict",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="supersession",
                        to="metering.duplicateconflict",
                    ),
                ),
            ],
            options={
                "ordering": ["-id"],
                "indexes": [
                    models.Index(fields=["source", "event_id"], name="supersession_key_idx")
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("replacement_seq__gt", models.F("original_seq"))),
                        name="supersession_replacement_later",
                    )
                ],
            },
        ),
        append_only("metering_eventsupersession", what="Event supersessions"),
    ]
