"""Migration operations that put invariants into PostgreSQL triggers.

SQLite (the embedded default) gets nothing from these: the services hold the
rule there, PostgreSQL holds it in the database too. Tests assert the refusal
on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable

from django.apps import AppConfig
from django.db import connections, migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

Operation = Callable[[StateApps, BaseDatabaseSchemaEditor], None]


def _run_on_postgres(sql: str) -> Operation:
    def run(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


def per_vendor(
    pg_forward: str, sqlite_forward: list[str], pg_reverse: str, sqlite_reverse: list[str]
) -> migrations.RunPython:
    """SQL for PostgreSQL (one script) and for SQLite (statement by statement: its driver runs one
    at a time), both ways."""

    def run(pg_sql: str, sqlite_sql: list[str]) -> Operation:
        def apply(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(pg_sql, params=None)
            else:
                for sql in sqlite_sql:
                    schema_editor.execute(sql, params=None)

        return apply

    return migrations.RunPython(run(pg_forward, sqlite_forward), run(pg_reverse, sqlite_reverse))


def postgres_only(forward_sql: str, reverse_sql: str) -> migrations.RunPython:
    return migrations.RunPython(_run_on_postgres(forward_sql), _run_on_postgres(reverse_sql))


def append_only_sql(table: str, *, what: str) -> tuple[str, str]:
    """(forward, reverse) SQL of append_only."""
    fn = f"{table}_append_only"
    forward = f"""
    CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger AS $$
    BEGIN
      RAISE EXCEPTION '{what} are append-only: % on {table} refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
    END; $$ LANGUAGE plpgsql;
    CREATE TRIGGER {fn}_row BEFORE UPDATE OR DELETE ON {table}
      FOR EACH ROW EXECUTE FUNCTION {fn}();
    """
    reverse = f"""
    DROP TRIGGER IF EXISTS {fn}_row ON {table};
    DROP FUNCTION IF EXISTS {fn}();
    """
    return forward, reverse


def append_only(table: str, *, what: str) -> migrations.RunPython:
    """Refuse UPDATE and DELETE on `table` (PostgreSQL).

    TRUNCATE is left to the table owner (test flushes use it); in production the
    application's role should not own the tables (docs/decisions.md).
    """
    return postgres_only(*append_only_sql(table, what=what))


# SQLite's triggers, kept whole across table rebuilds.
#
# On SQLite, Django alters a table (a column with a default, a changed constraint) by building a
# new table and copying the rows; the new table has none of the old one's triggers. Each app
# declares the SQLite triggers it must have *now* (not their history, which is in the
# migrations), and after every `migrate` (post_migrate) the missing ones are created again.
# tests/core/test_sqlite_triggers.py checks that a fresh SQLite database has exactly the declared
# ones, and that a dropped one comes back.

SQLITE_TRIGGERS: dict[str, dict[str, tuple[str, str]]] = {}


def sqlite_triggers_declare(app_label: str, triggers: dict[str, tuple[str, str]]) -> None:
    """Declare `app_label`'s SQLite triggers: {name: (table, definition after the name)}."""
    SQLITE_TRIGGERS[app_label] = triggers


def sqlite_triggers_restore(sender: AppConfig, using: str, **_: object) -> None:
    """Create the sender app's declared SQLite triggers that are missing (a post_migrate
    receiver; tables not migrated yet are skipped)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for name, (table, definition) in SQLITE_TRIGGERS.get(sender.label, {}).items():
            if table in tables:
                cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {definition}")
