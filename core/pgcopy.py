"""PostgreSQL ``COPY ... FROM STDIN`` of rows: the one way bulk inserts skip the ORM.

COPY's text format: one line per row, fields separated by tabs, ``\\N`` for
NULL, and backslash, tab, newline and carriage return escaped inside a field.
Most callers hand over rows of Python values (``copy_rows``); a hot path that
builds the text itself because it knows its fields need less escaping (the
ingest's event rows) hands over that text (``copy_in``), and gets the same
statement and the same driver call.

PostgreSQL only: callers keep their portable path (``bulk_create``, multi-row
INSERT) for SQLite.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def quote_name(name: str) -> str:
    """A PostgreSQL identifier, quoted (so ``timestamp`` or ``order`` are column names)."""
    return '"' + name.replace('"', '""') + '"'


def copy_statement(table: str, columns: Sequence[str]) -> str:
    """``COPY "table" ("a", "b") FROM STDIN`` for rows in ``columns`` order."""
    return f"COPY {quote_name(table)} ({', '.join(quote_name(c) for c in columns)}) FROM STDIN"


def copy_field(value: Any) -> str:
    """One field in COPY text form: None is NULL, lists and dicts are JSON, the rest ``str()``."""
    if value is None:
        return NULL
    if isinstance(value, list | dict):
        return json.dumps(value).translate(_ESCAPES)
    return str(value).translate(_ESCAPES)


def copy_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as COPY text, each field escaped by ``copy_field``."""
    return "".join("\t".join([copy_field(v) for v in row]) + "\n" for row in rows)


def copy_in(cursor: Any, statement: str, text: str) -> None:
    """Run ``statement`` (see ``copy_statement``) with ``text`` as its input (psycopg2's copy_expert)."""
    cursor.copy_expert(statement, io.StringIO(text))


def copy_rows(
    cursor: Any, *, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY ``rows`` (sequences of values in ``columns`` order) into ``table``."""
    copy_in(cursor, copy_statement(table, columns), copy_text(rows))
