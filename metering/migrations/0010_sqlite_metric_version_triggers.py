"""Put back the reference-generation triggers of metering_metricversion on SQLite.

Migration 0009 added a column with a default; on SQLite Django does that by
building a new table and copying the rows, and the new table has none of the
old one's triggers, so metric version changes stopped moving the generation
there (ingest in the quick start could keep validating against a stale
metric). PostgreSQL altered the table in place and kept its triggers: nothing
to do there. Any later migration that rebuilds one of the reference tables on
SQLite must do the same; `test_every_change_to_metrics_or_mappings_moves_the_generation`
fails when it does not.
"""

from django.db import migrations

from core.dbtriggers import per_vendor

TABLE = "metering_metricversion"
OPS = ("INSERT", "UPDATE", "DELETE")

SQLITE_FORWARD = [
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_reference_bump_{op.lower()} AFTER {op} ON {TABLE} "
    f"BEGIN UPDATE metering_reference_generation SET value = random() WHERE id = 1; END"
    for op in OPS
]


class Migration(migrations.Migration):
    dependencies = [("metering", "0009_metric_accepts_negative")]

    # Backwards there is nothing to undo: 0005's reverse drops these triggers by name.
    operations = [per_vendor("SELECT 1", SQLITE_FORWARD, "SELECT 1", [])]
