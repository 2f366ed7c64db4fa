"""A generation number for the reference data ingest reads on every batch.

Each web process keeps the metric catalog and the customer mappings in memory
(metering/reference.py) tagged with the generation it read them at. Any
INSERT, UPDATE, DELETE or TRUNCATE of metrics, metric versions or mappings
moves the generation to a new value, in the same transaction; every ingest
transaction reads it after its locks and starts again with fresh reference
data when it differs from what the batch was validated with.

The generation lives in a one-row table, not in a Django model: a table's row
is transactional (a rolled-back change rolls back its bump, and an uncommitted
bump is invisible to other sessions, like the change itself), and a table
unknown to Django is not flushed between tests. A new value is never reused:
PostgreSQL takes it from a sequence (not rolled back), SQLite from random(),
so a rolled-back change can never leave a process trusting data read under
it.
"""

from django.db import migrations

from core.dbtriggers import per_vendor

TABLES = ["metering_metricdefinition", "metering_metricversion", "metering_customermapping"]

PG_FORWARD = """
CREATE SEQUENCE metering_reference_generation_seq;
CREATE TABLE metering_reference_generation (
    id smallint PRIMARY KEY CHECK (id = 1),
    value bigint NOT NULL
);
INSERT INTO metering_reference_generation VALUES (1, nextval('metering_reference_generation_seq'));
CREATE FUNCTION metering_reference_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE metering_reference_generation SET value = nextval('metering_reference_generation_seq')
   WHERE id = 1;
  RETURN NULL;
END $$;
""" + "".join(
    f"CREATE TRIGGER {t}_reference_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION metering_reference_bump();\n"
    for t in TABLES
)

PG_REVERSE = (
    "".join(f"DROP TRIGGER {t}_reference_bump ON {t};\n" for t in TABLES)
    + """
DROP FUNCTION metering_reference_bump();
DROP TABLE metering_reference_generation;
DROP SEQUENCE metering_reference_generation_seq;
"""
)

SQLITE_FORWARD = [
    "CREATE TABLE metering_reference_generation (id integer PRIMARY KEY CHECK (id = 1), "
    "value integer NOT NULL)",
    "INSERT INTO metering_reference_generation VALUES (1, random())",
] + [
    f"CREATE TRIGGER {t}_reference_bump_{op.lower()} AFTER {op} ON {t} BEGIN "
    f"UPDATE metering_reference_generation SET value = random() WHERE id = 1; END"
    for t in TABLES
    for op in ("INSERT", "UPDATE", "DELETE")
]

SQLITE_REVERSE = [
    f"DROP TRIGGER {t}_reference_bump_{op.lower()}"
    for t in TABLES
    for op in ("INSERT", "UPDATE", "DELETE")
] + ["DROP TABLE metering_reference_generation"]


class Migration(migrations.Migration):
    dependencies = [("metering", "0004_event_fks_per_statement")]

    operations = [per_vendor(PG_FORWARD, SQLITE_FORWARD, PG_REVERSE, SQLITE_REVERSE)]
