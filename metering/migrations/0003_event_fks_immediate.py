"""Event table foreign keys: checked at INSERT, not at COMMIT, and one fewer (PostgreSQL).

Deferred checks ran at commit, i.e. while the batch held the audit-chain and
control-total row locks, which serialised concurrent ingest batches. Checked
immediately, they run in the INSERT, before those locks are taken.

The FK on metric_id goes: metric_version_id's FK already proves the metric
(the version row belongs to exactly one metric) and each FK check is a per-row
trigger, the largest cost of inserting an event (docs/metering.md).
"""

from django.db import migrations

from core.dbtriggers import postgres_only

FKS = [
    ("metering_usageevent_customer_id_fkey", "customer_id", "core_customer"),
    ("metering_usageevent_metric_version_id_fkey", "metric_version_id", "metering_metricversion"),
]
METRIC_FK = ("metering_usageevent_metric_id_fkey", "metric_id", "metering_metricdefinition")


def _add(name: str, col: str, table: str, deferrable: str) -> str:
    return (
        f"ALTER TABLE metering_usageevent ADD CONSTRAINT {name} FOREIGN KEY ({col}) "
        f"REFERENCES {table} (id) {deferrable};"
    )


FORWARD = "\n".join(
    [f"ALTER TABLE metering_usageevent DROP CONSTRAINT {name};" for name, _, _ in [*FKS, METRIC_FK]]
    + [_add(*fk, "NOT DEFERRABLE") for fk in FKS]
)
REVERSE = "\n".join(
    [f"ALTER TABLE metering_usageevent DROP CONSTRAINT {name};" for name, _, _ in FKS]
    + [_add(*fk, "DEFERRABLE INITIALLY DEFERRED") for fk in [*FKS, METRIC_FK]]
)


class Migration(migrations.Migration):
    dependencies = [("metering", "0002_refresh_schedule")]

    operations = [postgres_only(FORWARD, REVERSE)]
