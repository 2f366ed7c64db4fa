"""EventKey: one `key` column (source + TAB + event_id) instead of a (source, event_id) pair.

Django does not migrate a composite primary key, so the table is rebuilt: a
new table with the keys copied across, then renamed, both ways (the
append-only trigger is created again on PostgreSQL). See EventKey's docstring for why.
"""

from django.db import migrations, models

from core.dbtriggers import append_only_sql, per_vendor

APPEND_ONLY, _ = append_only_sql("metering_eventkey", what="Event keys")

PG_FORWARD = (
    """
CREATE TABLE metering_eventkey_new (
    key varchar(301) NOT NULL PRIMARY KEY,
    content_hash varchar(32) NOT NULL,
    received_at timestamp with time zone NOT NULL
);
INSERT INTO metering_eventkey_new SELECT source || E'\\t' || event_id, content_hash, received_at
  FROM metering_eventkey;
DROP TABLE metering_eventkey;
ALTER TABLE metering_eventkey_new RENAME TO metering_eventkey;
ALTER INDEX metering_eventkey_new_pkey RENAME TO metering_eventkey_pkey;
"""
    + APPEND_ONLY
)

PG_REVERSE = (
    """
CREATE TABLE metering_eventkey_old (
    source varchar(100) NOT NULL,
    event_id varchar(200) NOT NULL,
    content_hash varchar(32) NOT NULL,
    received_at timestamp with time zone NOT NULL,
    PRIMARY KEY (source, event_id)
);
INSERT INTO metering_eventkey_old
  SELECT split_part(key, E'\\t', 1), substr(key, strpos(key, E'\\t') + 1), content_hash, received_at
  FROM metering_eventkey;
DROP TABLE metering_eventkey;
ALTER TABLE metering_eventkey_old RENAME TO metering_eventkey;
ALTER INDEX metering_eventkey_old_pkey RENAME TO metering_eventkey_pkey;
"""
    + APPEND_ONLY
)

SQLITE_FORWARD = [
    'CREATE TABLE "metering_eventkey_new" ("key" varchar(301) NOT NULL PRIMARY KEY, '
    '"content_hash" varchar(32) NOT NULL, "received_at" datetime NOT NULL)',
    'INSERT INTO "metering_eventkey_new" SELECT "source" || char(9) || "event_id", '
    '"content_hash", "received_at" FROM "metering_eventkey"',
    'DROP TABLE "metering_eventkey"',
    'ALTER TABLE "metering_eventkey_new" RENAME TO "metering_eventkey"',
]

SQLITE_REVERSE = [
    'CREATE TABLE "metering_eventkey_old" ("source" varchar(100) NOT NULL, '
    '"event_id" varchar(200) NOT NULL, "content_hash" varchar(32) NOT NULL, '
    '"received_at" datetime NOT NULL, PRIMARY KEY ("source", "event_id"))',
    'INSERT INTO "metering_eventkey_old" SELECT substr("key", 1, instr("key", char(9)) - 1), '
    'substr("key", instr("key", char(9)) + 1), "content_hash", "received_at" FROM "metering_eventkey"',
    'DROP TABLE "metering_eventkey"',
    'ALTER TABLE "metering_eventkey_old" RENAME TO "metering_eventkey"',
]


class Migration(migrations.Migration):
    dependencies = [("metering", "0005_reference_generation")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="EventKey"),
                migrations.CreateModel(
                    name="EventKey",
                    fields=[
                        (
                            "key",
                            models.CharField(max_length=301, primary_key=True, serialize=False),
                        ),
                        ("content_hash", models.CharField(max_length=32)),
                        ("received_at", models.DateTimeField()),
                    ],
                ),
            ],
            database_operations=[
                per_vendor(PG_FORWARD, SQLITE_FORWARD, PG_REVERSE, SQLITE_REVERSE),
            ],
        ),
    ]
