"""Event table foreign keys checked once per statement instead of once per row (PostgreSQL).

The per-row FK triggers were most of the cost of writing an event: each of the
~900 rows of a batch ran one lookup and took one KEY SHARE lock on its customer
and on its metric version (the same version row for the whole batch, shared by
every concurrent batch). This keeps the same guarantee with set-based checks:

* insert side: one AFTER INSERT ... FOR EACH STATEMENT trigger with the inserted
  rows as a transition table locks each distinct referenced row FOR KEY SHARE
  (what the FK did per row) and refuses the statement if one is missing
  (SQLSTATE 23503 foreign_key_violation, like the FK);
* referenced side: deleting a customer or metric version (or changing its id)
  that events reference is refused, and so is TRUNCATE of those tables while
  events exist (an FK refuses it too).

Why it is race-free under READ COMMITTED (the project's isolation level): an
inserting transaction holds KEY SHARE locks on the rows it references until it
commits, so a concurrent DELETE waits for it and its AFTER trigger (a fresh
snapshot) then sees the committed events; an insert that comes after an
uncommitted DELETE waits on that row, and if the delete commits, the locking
read skips the row and the check (a fresh snapshot) finds it missing.
"""

from django.db import migrations

from core.dbtriggers import postgres_only

FKS = [
    ("metering_usageevent_customer_id_fkey", "customer_id", "core_customer"),
    ("metering_usageevent_metric_version_id_fkey", "metric_version_id", "metering_metricversion"),
]

CHECK_INSERT = """
  PERFORM 1 FROM {table} r WHERE r.id IN (SELECT DISTINCT {col} FROM new_rows) FOR KEY SHARE OF r;
  SELECT n.{col} INTO missing FROM (SELECT DISTINCT {col} FROM new_rows) n
   WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE r.id = n.{col}) LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'insert on table "metering_usageevent" violates foreign key constraint "{name}"'
      USING ERRCODE = 'foreign_key_violation',
            DETAIL = format('Key ({col})=(%s) is not present in table "{table}".', missing);
  END IF;
"""

FORWARD = "\n".join(
    [f"ALTER TABLE metering_usageevent DROP CONSTRAINT {name};" for name, _, _ in FKS]
    + [
        """
CREATE FUNCTION metering_usageevent_fk_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE missing bigint;
BEGIN
"""
        + "".join(CHECK_INSERT.format(name=n, col=c, table=t) for n, c, t in FKS)
        + """
  RETURN NULL;
END $$;
CREATE TRIGGER metering_usageevent_fk_insert AFTER INSERT ON metering_usageevent
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION metering_usageevent_fk_insert();

-- TG_ARGV: the event column that references the table, the constraint's name.
CREATE FUNCTION metering_usageevent_fk_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE used boolean;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    used := EXISTS (SELECT 1 FROM metering_usageevent);
  ELSIF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
    RETURN NULL;
  ELSE
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM metering_usageevent WHERE %I = $1)', TG_ARGV[0])
      INTO used USING OLD.id;
  END IF;
  IF used THEN
    RAISE EXCEPTION '% on table "%" violates foreign key constraint "%" on table "metering_usageevent"',
      lower(TG_OP), TG_TABLE_NAME, TG_ARGV[1]
      USING ERRCODE = 'foreign_key_violation',
            DETAIL = 'Usage events still reference it.';
  END IF;
  RETURN NULL;
END $$;
"""
    ]
    + [
        f"""
CREATE TRIGGER metering_usageevent_fk_{col} AFTER DELETE OR UPDATE OF id ON {table}
  FOR EACH ROW EXECUTE FUNCTION metering_usageevent_fk_referenced('{col}', '{name}');
CREATE TRIGGER metering_usageevent_fk_{col}_truncate AFTER TRUNCATE ON {table}
  FOR EACH STATEMENT EXECUTE FUNCTION metering_usageevent_fk_referenced('{col}', '{name}');
"""
        for name, col, table in FKS
    ]
)

REVERSE = "\n".join(
    [
        f"DROP TRIGGER metering_usageevent_fk_{col} ON {table};\n"
        f"DROP TRIGGER metering_usageevent_fk_{col}_truncate ON {table};"
        for _, col, table in FKS
    ]
    + [
        "DROP TRIGGER metering_usageevent_fk_insert ON metering_usageevent;",
        "DROP FUNCTION metering_usageevent_fk_insert();",
        "DROP FUNCTION metering_usageevent_fk_referenced();",
    ]
    + [
        f"ALTER TABLE metering_usageevent ADD CONSTRAINT {name} FOREIGN KEY ({col}) "
        f"REFERENCES {table} (id) NOT DEFERRABLE;"
        for name, col, table in FKS
    ]
)


class Migration(migrations.Migration):
    dependencies = [("metering", "0003_event_fks_immediate")]

    operations = [postgres_only(FORWARD, REVERSE)]
