"""core.pgcopy: rows go in through COPY exactly as they were, whatever they contain."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection

from core import pgcopy


def test_fields_are_escaped_for_copys_text_format() -> None:
    assert pgcopy.copy_text([("a\tb", None, "c\\d\ne\r", {"k": "x\ty"}, Decimal("1.50"))]) == (
        'a\\tb\t\\N\tc\\\\d\\ne\\r\t{"k": "x\\\\ty"}\t1.50\n'
    )
    assert pgcopy.copy_statement("t", ["timestamp", 'we"ird']) == (
        'COPY "t" ("timestamp", "we""ird") FROM STDIN'
    )


@pytest.mark.django_db
def test_rows_round_trip_through_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    back = "b\\"  # b and one backslash
    rows = [
        (1, "tab\there", None, {"a": [1, back]}, Decimal("0.000001")),
        (2, "new\nline and back\\slash", "ünïcode", None, Decimal("-12.50")),
    ]
    with connection.cursor() as cur:
        cur.execute(
            'CREATE TEMP TABLE pgcopy_t (id int, "text" text, "order" text, doc jsonb, n numeric)'
        )
        pgcopy.copy_rows(
            cur,
            table="pgcopy_t",
            columns=["id", "text", "order", "doc", "n"],
            rows=rows,
        )
        cur.execute('SELECT id, "text", "order", doc::text, n FROM pgcopy_t ORDER BY id')
        got = cur.fetchall()
    assert got == [
        (1, "tab\there", None, '{"a": [1, "b\\\\"]}', Decimal("0.000001")),
        (2, "new\nline and back\\slash", "ünïcode", None, Decimal("-12.50")),
    ]
