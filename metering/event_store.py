"""The batch insert of the ingest fast path: keys then events, one statement per batch.

PostgreSQL: the batch is COPYed into a session temp table, then ONE statement
inserts the keys (ON CONFLICT DO NOTHING RETURNING) and, for the returned keys
that map to a customer, the events. A key already present (earlier batch, or a
concurrent one that committed first) is not returned: that event is a
duplicate. Keys are inserted in sorted order so two batches sharing keys never
deadlock. SQLite (embedded default): the same two steps with multi-row
INSERT ... ON CONFLICT DO NOTHING RETURNING.

Must run inside the caller's transaction.
"""

from __future__ import annotations

import io
from datetime import datetime

import orjson
from django.db import connection

from metering.ingest import Candidate
from metering.summaries import event_insert_lock

Key = tuple[str, str]

EVENT_COLUMNS = ("source, event_id, customer_ref, customer_id, metric_id, metric_version_id, "
                 '"timestamp", value, properties, received_at, api_key_id')

PG_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS metering_ingest_batch (
    source varchar(100) NOT NULL, event_id varchar(200) NOT NULL, content_hash varchar(32) NOT NULL,
    customer_ref varchar(200) NOT NULL, customer_id bigint, metric_id bigint NOT NULL,
    metric_version_id bigint NOT NULL, ts timestamptz NOT NULL, value numeric(30, 6), properties jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""

PG_INSERT = f"""
WITH k AS (
    INSERT INTO metering_eventkey (source, event_id, content_hash, received_at)
    SELECT source, event_id, content_hash, %s FROM metering_ingest_batch ORDER BY source, event_id
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
), e AS (
    INSERT INTO metering_usageevent ({EVENT_COLUMNS})
    SELECT b.source, b.event_id, b.customer_ref, b.customer_id, b.metric_id, b.metric_version_id, b.ts,
           b.value, b.properties, %s, %s
    FROM metering_ingest_batch b JOIN k USING (source, event_id)
    WHERE b.customer_id IS NOT NULL
)
SELECT source, event_id FROM k
"""

PG_CONFLICTS = """
SELECT b.source, b.event_id FROM metering_ingest_batch b
JOIN metering_eventkey k USING (source, event_id) WHERE k.content_hash <> b.content_hash
"""

def insert(cands: list[Candidate], *, received_at: datetime, api_key_id: int | None) -> tuple[set[Key], set[Key]]:
    """Store keys (all candidates) and events (mapped ones). Returns (inserted keys, conflicting keys)."""
    if not cands:
        return set(), set()
    event_insert_lock()
    if connection.vendor == "postgresql":
        return _insert_pg(cands, received_at=received_at, api_key_id=api_key_id)
    return _insert_portable(cands, received_at=received_at, api_key_id=api_key_id)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\") if "\\" in text else text


def copy_rows(cands: list[Candidate]) -> str:
    """The batch as COPY text rows (also used by bench/ingest.py for the raw COPY baseline).

    Ids carry no control characters (validation refuses them), and orjson escapes
    them inside JSON, so only backslashes need doubling.
    """
    lines = []
    for c in cands:
        lines.append("\t".join((
            _esc(c.source), _esc(c.event_id), c.content_hash, _esc(c.customer_ref),
            str(c.customer_id) if c.customer_id is not None else "\\N",
            str(c.version.metric_id), str(c.version.id), c.timestamp.isoformat(),
            str(c.value) if c.value is not None else "\\N",
            _esc(c.props_json),
        )))
    lines.append("")
    return "\n".join(lines)


def _insert_pg(cands: list[Candidate], *, received_at: datetime, api_key_id: int | None) -> tuple[set[Key], set[Key]]:
    with connection.cursor() as cur:
        cur.execute(PG_TEMP)
        cur.execute("DELETE FROM metering_ingest_batch")
        cur.copy_expert("COPY metering_ingest_batch FROM STDIN", io.StringIO(copy_rows(cands)))
        cur.execute(PG_INSERT, [received_at, received_at, api_key_id])
        inserted = {(s, e) for s, e in cur.fetchall()}
        conflicts: set[Key] = set()
        if len(inserted) < len(cands):
            cur.execute(PG_CONFLICTS)
            conflicts = {(s, e) for s, e in cur.fetchall()}
    return inserted, conflicts


CHUNK = 400  # SQLite: 4 params a key row, well under its variable limit


def _insert_portable(
    cands: list[Candidate], *, received_at: datetime, api_key_id: int | None
) -> tuple[set[Key], set[Key]]:
    ops = connection.ops
    at = ops.adapt_datetimefield_value(received_at)
    ordered = sorted(cands, key=lambda c: (c.source, c.event_id))
    inserted: set[Key] = set()
    with connection.cursor() as cur:
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i:i + CHUNK]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params: list[object] = []
            for c in chunk:
                params += [c.source, c.event_id, c.content_hash, at]
            cur.execute(f"INSERT INTO metering_eventkey (source, event_id, content_hash, received_at) "
                        f"VALUES {values} ON CONFLICT DO NOTHING RETURNING source, event_id", params)
            inserted.update((s, e) for s, e in cur.fetchall())
        rows = [
            (c.source, c.event_id, c.customer_ref, c.customer_id, c.version.metric_id, c.version.id,
             ops.adapt_datetimefield_value(c.timestamp), ops.adapt_decimalfield_value(c.value, 30, 6),
             c.props_json, at, api_key_id)
            for c in ordered if c.customer_id is not None and (c.source, c.event_id) in inserted
        ]
        if rows:
            cur.executemany(f"INSERT INTO metering_usageevent ({EVENT_COLUMNS}) "
                            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        conflicts: set[Key] = set()
        dupes = [c for c in ordered if (c.source, c.event_id) not in inserted]
        by_source: dict[str, dict[str, str]] = {}
        for c in dupes:
            by_source.setdefault(c.source, {})[c.event_id] = c.content_hash
        for source, hashes in by_source.items():
            ids = list(hashes)
            for i in range(0, len(ids), CHUNK):
                part = ids[i:i + CHUNK]
                cur.execute(f"SELECT event_id, content_hash FROM metering_eventkey WHERE source = %s "
                            f"AND event_id IN ({', '.join(['%s'] * len(part))})", [source, *part])
                conflicts.update((source, e) for e, h in cur.fetchall() if h != hashes[e])
    return inserted, conflicts
