"""The batch insert of the ingest fast path: keys, then events.

PostgreSQL: ONE statement inserts the batch's keys in sorted order (so two
batches sharing keys never deadlock) with ON CONFLICT DO NOTHING and returns
the inserted ones; a key already present (earlier batch, or a concurrent one
that committed first) is not returned: that event is a duplicate. Then one
COPY writes the events of the returned keys that map to a customer straight
into the partitioned table (COPY beats INSERT ... SELECT there; measured), and
one query fetches the stored content hashes of the duplicates. SQLite
(embedded default): multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING.

Must run inside the caller's transaction, after metering.reference.lock_for_ingest
(it holds the event watermark lock).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from django.db import connection

from metering import reference
from metering.ingest import Candidate

Key = str  # Candidate.key: source + TAB + event_id

EVENT_COLUMNS = (
    "source, event_id, customer_ref, customer_id, metric_id, metric_version_id, "
    '"timestamp", value, properties, received_at, api_key_id'
)

# The arrays travel as one newline-joined string each (ids and sources carry no control
# characters: validation refuses them): psycopg2 would send a list as an ARRAY[...] literal of
# one quoted element per id, which PostgreSQL parses many times slower. The inserted keys come
# back as one string too.
PG_KEYS = """
WITH ins AS (
    INSERT INTO metering_eventkey (source, event_id, content_hash, received_at)
    SELECT s, e, h, %s
    FROM unnest(string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n'))
        AS t(s, e, h)
    ON CONFLICT DO NOTHING
    RETURNING source, event_id
)
SELECT string_agg(source || E'\\t' || event_id, E'\\n'),
       (SELECT value FROM metering_reference_generation WHERE id = 1)
FROM ins
"""

# One index probe per duplicate (a join could pick a scan of the whole key table).
PG_KEY_HASHES = """
SELECT t.s, t.e, (SELECT k.content_hash FROM metering_eventkey k WHERE k.source = t.s AND k.event_id = t.e)
FROM unnest(string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n')) AS t(s, e)
"""

PG_COPY_EVENTS = f"COPY metering_usageevent ({EVENT_COLUMNS}) FROM STDIN"


@dataclass
class Stored:
    inserted: set[Key]  # keys stored now (accepted or held)
    conflicts: set[Key]  # keys already stored with other content


def insert(
    cands: list[Candidate],
    *,
    received_at: datetime,
    api_key_id: int | None,
    expect_generation: int | None = None,
) -> Stored:
    """Store keys (all candidates) and events (mapped ones).

    expect_generation: the metering.reference generation the candidates were validated and
    mapped at; reference.Stale is raised before any event is written if it moved.
    """
    if not cands:
        if expect_generation is not None:
            reference.confirm(expect_generation)
        return Stored(set(), set())
    if connection.vendor == "postgresql":
        return _insert_pg(
            cands,
            received_at=received_at,
            api_key_id=api_key_id,
            expect_generation=expect_generation,
        )
    if expect_generation is not None:
        reference.confirm(expect_generation)
    return _insert_portable(cands, received_at=received_at, api_key_id=api_key_id)


def copy_rows(cands: list[Candidate], *, received_at: str, api_key_id: int | None) -> str:
    """Event rows as COPY text, in EVENT_COLUMNS order.

    Ids carry no control characters (validation refuses them) and orjson escapes
    them inside JSON, so only backslashes need doubling.
    """
    null = "\\N"
    tail = f"{received_at}\t{api_key_id if api_key_id is not None else null}"
    lines = []
    for c in cands:
        ids = f"{c.source}\t{c.event_id}\t{c.customer_ref}"
        props = c.props_json
        if "\\" in ids:
            ids = ids.replace("\\", "\\\\")
        if "\\" in props:
            props = props.replace("\\", "\\\\")
        value = str(c.value) if c.value is not None else null
        version = c.version
        lines.append(
            f"{ids}\t{c.customer_id}\t{version.metric_id}\t{version.id}\t{c.ts_iso}\t{value}\t"
            f"{props}\t{tail}"
        )
    lines.append("")
    return "\n".join(lines)


def _insert_pg(
    cands: list[Candidate],
    *,
    received_at: datetime,
    api_key_id: int | None,
    expect_generation: int | None,
) -> Stored:
    ordered = sorted(cands, key=attrgetter("key"))  # same lock order in every batch
    with connection.cursor() as cur:
        cur.execute(
            PG_KEYS,
            [
                received_at,
                "\n".join([c.source for c in ordered]),
                "\n".join([c.event_id for c in ordered]),
                "\n".join([c.content_hash for c in ordered]),
            ],
        )
        returned, generation = cur.fetchone()
        if expect_generation is not None:
            reference.confirm(expect_generation, seen=generation)  # before any event is written
        inserted: set[Key] = set(returned.split("\n")) if returned else set()
        rows = [c for c in ordered if c.customer_id is not None and c.key in inserted]
        if rows:
            text = copy_rows(rows, received_at=received_at.isoformat(), api_key_id=api_key_id)
            cur.copy_expert(PG_COPY_EVENTS, io.StringIO(text))
        conflicts: set[Key] = set()
        dupes = [c for c in ordered if c.key not in inserted]
        if dupes:
            cur.execute(
                PG_KEY_HASHES,
                ["\n".join([c.source for c in dupes]), "\n".join([c.event_id for c in dupes])],
            )
            stored = {f"{s}\t{e}": h for s, e, h in cur.fetchall()}
            conflicts = {c.key for c in dupes if stored.get(c.key) != c.content_hash}
    return Stored(inserted, conflicts)


CHUNK = 400  # SQLite: 4 params a key row, well under its variable limit


def _insert_portable(
    cands: list[Candidate], *, received_at: datetime, api_key_id: int | None
) -> Stored:
    ops = connection.ops
    at = ops.adapt_datetimefield_value(received_at)
    ordered = sorted(cands, key=attrgetter("key"))
    inserted: set[Key] = set()
    with connection.cursor() as cur:
        for i in range(0, len(ordered), CHUNK):
            chunk = ordered[i : i + CHUNK]
            values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
            params: list[object] = []
            for c in chunk:
                params += [c.source, c.event_id, c.content_hash, at]
            cur.execute(
                f"INSERT INTO metering_eventkey (source, event_id, content_hash, received_at) "
                f"VALUES {values} ON CONFLICT DO NOTHING RETURNING source, event_id",
                params,
            )
            inserted.update(f"{s}\t{e}" for s, e in cur.fetchall())
        rows = [
            (
                c.source,
                c.event_id,
                c.customer_ref,
                c.customer_id,
                c.version.metric_id,
                c.version.id,
                ops.adapt_datetimefield_value(c.timestamp),
                ops.adapt_decimalfield_value(c.value, 30, 6),
                c.props_json,
                at,
                api_key_id,
            )
            for c in ordered
            if c.customer_id is not None and c.key in inserted
        ]
        if rows:
            cur.executemany(
                f"INSERT INTO metering_usageevent ({EVENT_COLUMNS}) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        conflicts: set[Key] = set()
        dupes = [c for c in ordered if c.key not in inserted]
        by_source: dict[str, dict[str, str]] = {}
        for c in dupes:
            by_source.setdefault(c.source, {})[c.event_id] = c.content_hash
        for source, hashes in by_source.items():
            ids = list(hashes)
            for i in range(0, len(ids), CHUNK):
                part = ids[i : i + CHUNK]
                cur.execute(
                    f"SELECT event_id, content_hash FROM metering_eventkey WHERE source = %s "
                    f"AND event_id IN ({', '.join(['%s'] * len(part))})",
                    [source, *part],
                )
                conflicts.update(f"{source}\t{e}" for e, h in cur.fetchall() if h != hashes[e])
    return Stored(inserted, conflicts)
