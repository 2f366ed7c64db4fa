"""The batch insert of the ingest fast path: keys, then events.

PostgreSQL stores a batch's keys (EventKey: source TAB event_id) in sorted
order, so two batches sharing keys never deadlock, one of two ways:

* optimistic (first): one query finds which of the batch's keys are stored
  already, with their content hashes (those events are duplicates), and one
  plain INSERT stores the rest. This costs ~25% less than ON CONFLICT's
  speculative insertion (measured). A key that another transaction stores
  between the two makes the INSERT fail with a unique violation: KeyRace is
  raised, the caller rolls back and runs the batch again the safe way.
* safe: ONE statement inserts the keys with ON CONFLICT DO NOTHING and returns
  the inserted ones; a key already present (earlier batch, or a concurrent one
  that committed first, waited for) is not returned: that event is a
  duplicate. One query then fetches the stored hashes of the duplicates.

Then one COPY writes the events of the new keys that map to a customer
straight into the partitioned table (COPY beats INSERT ... SELECT there;
measured). SQLite (embedded default): multi-row INSERT ... ON CONFLICT DO
NOTHING RETURNING.

Must run inside the caller's transaction, after metering.reference.lock_for_ingest
(it holds the event watermark lock, and turns sequential scans off so that the
key lookup always uses the key index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.db import IntegrityError, connection

from core import pgcopy
from metering import reference
from metering.ingest import Candidate
from metering.models import EventSupersession

Key = str  # Candidate.key and EventKey.key: source + TAB + event_id

EVENT_COLUMNS = (
    "source, event_id, customer_ref, customer_id, metric_id, metric_version_id, "
    '"timestamp", value, properties, received_at, api_key_id'
)

# The looked-up keys go in through a scalar subquery: as a constant array the planner estimated
# each of the ~1,000 elements on its own (0.3-0.9 ms of planning, more than the lookup itself).
# Lists travel as one newline-joined string each (keys carry no control characters: validation
# refuses them): psycopg2 would send a list as an ARRAY[...] literal of one quoted element per
# key, which PostgreSQL parses many times slower. Each statement that runs first after the
# ingest locks also returns the reference generation (metering.reference.confirm).
PG_STORED_KEYS = """
SELECT (SELECT value FROM metering_reference_generation WHERE id = 1),
       array_agg(k.key), array_agg(k.content_hash)
FROM metering_eventkey k
WHERE k.key = ANY((SELECT string_to_array(%s, E'\\n'))::text[])
"""

PG_INSERT_KEYS = """
INSERT INTO metering_eventkey (key, content_hash, received_at)
SELECT k, h, %s FROM unnest(string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n')) AS t(k, h)
"""

PG_INSERT_KEYS_SAFE = """
WITH ins AS (
    INSERT INTO metering_eventkey (key, content_hash, received_at)
    SELECT k, h, %s FROM unnest(string_to_array(%s, E'\\n'), string_to_array(%s, E'\\n')) AS t(k, h)
    ON CONFLICT DO NOTHING
    RETURNING key
)
SELECT string_agg(key, E'\\n'), (SELECT value FROM metering_reference_generation WHERE id = 1)
FROM ins
"""

# One index probe per duplicate (a join could pick a scan of the whole key table).
PG_KEY_HASHES = """
SELECT t.k, (SELECT k.content_hash FROM metering_eventkey k WHERE k.key = t.k)
FROM unnest(string_to_array(%s, E'\\n')) AS t(k)
"""

PG_COPY_EVENTS = pgcopy.copy_statement(
    "metering_usageevent", [name.strip(' "') for name in EVENT_COLUMNS.split(",")]
)

KEY_CONSTRAINT = "metering_eventkey_pkey"


class KeyRace(Exception):
    """Another transaction stored one of the batch's keys after the lookup: run it again, safely."""


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
    optimistic: bool = False,
) -> Stored:
    """Store keys (all candidates) and events (mapped ones).

    expect_generation: the metering.reference generation the candidates were validated and
    mapped at; reference.Stale is raised before any event is written if it moved.
    optimistic: look up, then plain insert (PostgreSQL); may raise KeyRace.
    """
    if not cands:
        if expect_generation is not None:
            reference.confirm(expect_generation)
        return Stored(set(), set())
    if connection.vendor == "postgresql":
        return _insert_pg(
            cands,
            _keys_optimistic if optimistic else _keys_safe,
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
    versions: dict[int, str] = {}  # metric and version ids, formatted once per version
    lines = []
    for c in cands:
        ids = f"{c.source}\t{c.event_id}\t{c.customer_ref}"
        props = c.props_json
        if "\\" in ids:
            ids = ids.replace("\\", "\\\\")
        if "\\" in props:
            props = props.replace("\\", "\\\\")
        value = str(c.value) if c.value is not None else null
        version = versions.get(c.version.id)
        if version is None:
            version = versions[c.version.id] = f"{c.version.metric_id}\t{c.version.id}"
        lines.append(f"{ids}\t{c.customer_id}\t{version}\t{c.ts_iso}\t{value}\t{props}\t{tail}")
    lines.append("")
    return "\n".join(lines)


def _insert_pg(
    cands: list[Candidate],
    store_keys: Callable[[Any, list[Candidate], datetime], tuple[set[Key], dict[Key, str], int]],
    *,
    received_at: datetime,
    api_key_id: int | None,
    expect_generation: int | None,
) -> Stored:
    ordered = sorted(cands, key=attrgetter("key"))  # same lock order in every batch
    with connection.cursor() as cur:
        inserted, stored_hashes, generation = store_keys(cur, ordered, received_at)
        if expect_generation is not None:
            reference.confirm(expect_generation, seen=generation)  # before any event is written
        rows = [c for c in ordered if c.customer_id is not None and c.key in inserted]
        if rows:
            text = copy_rows(rows, received_at=received_at.isoformat(), api_key_id=api_key_id)
            pgcopy.copy_in(cur, PG_COPY_EVENTS, text)
    conflicts = {
        c.key
        for c in ordered
        if c.key not in inserted and stored_hashes.get(c.key) != c.content_hash
    }
    if conflicts:
        conflicts -= _taken_versions(conflicts, ordered)
    return Stored(inserted, conflicts)


def _taken_versions(conflicts: set[Key], cands: list[Candidate]) -> set[Key]:
    """The conflicting keys whose content is a version finance took (decision 51): a
    redelivery of a replacement is a harmless duplicate. Asked only when a batch has conflicts."""
    hashes = {c.key: c.content_hash for c in cands if c.key in conflicts}
    sources = {k.split("\t", 1)[0] for k in hashes}
    ids = {k.split("\t", 1)[1] for k in hashes}
    taken = EventSupersession.objects.filter(source__in=sources, event_id__in=ids).values_list(
        "source", "event_id", "replacement_hash"
    )
    return {key for source, event_id, h in taken if hashes.get(key := f"{source}\t{event_id}") == h}


def _keys_optimistic(
    cur: Any, ordered: list[Candidate], received_at: datetime
) -> tuple[set[Key], dict[Key, str], int]:
    """Look up, then plain insert: (keys inserted, stored hashes of the others, generation)."""
    cur.execute(PG_STORED_KEYS, ["\n".join([c.key for c in ordered])])
    generation, found_keys, found_hashes = cur.fetchone()
    stored: dict[Key, str] = dict(zip(found_keys, found_hashes, strict=True)) if found_keys else {}
    fresh = [c for c in ordered if c.key not in stored]
    if fresh:
        try:
            cur.execute(
                PG_INSERT_KEYS,
                [
                    received_at,
                    "\n".join([c.key for c in fresh]),
                    "\n".join([c.content_hash for c in fresh]),
                ],
            )
        except IntegrityError as exc:  # the caller's transaction.atomic rolls back
            if (
                getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "")
                == KEY_CONSTRAINT
            ):
                raise KeyRace from exc
            raise
    return {c.key for c in fresh}, stored, generation


def _keys_safe(
    cur: Any, ordered: list[Candidate], received_at: datetime
) -> tuple[set[Key], dict[Key, str], int]:
    """ON CONFLICT DO NOTHING: (keys inserted, stored hashes of the others, generation)."""
    cur.execute(
        PG_INSERT_KEYS_SAFE,
        [
            received_at,
            "\n".join([c.key for c in ordered]),
            "\n".join([c.content_hash for c in ordered]),
        ],
    )
    returned, generation = cur.fetchone()
    inserted: set[Key] = set(returned.split("\n")) if returned else set()
    stored: dict[Key, str] = {}
    dupes = [c.key for c in ordered if c.key not in inserted]
    if dupes:
        cur.execute(PG_KEY_HASHES, ["\n".join(dupes)])
        stored = dict(cur.fetchall())
    return inserted, stored, generation


CHUNK = 400  # SQLite: 3 params a key row, well under its variable limit


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
            values = ", ".join(["(%s, %s, %s)"] * len(chunk))
            params: list[str | None] = []
            for c in chunk:
                params += [c.key, c.content_hash, at]
            cur.execute(
                f"INSERT INTO metering_eventkey (key, content_hash, received_at) "
                f"VALUES {values} ON CONFLICT DO NOTHING RETURNING key",
                params,
            )
            inserted.update(k for (k,) in cur.fetchall())
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
        hashes = {c.key: c.content_hash for c in ordered if c.key not in inserted}
        conflicts: set[Key] = set()
        keys = list(hashes)
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            cur.execute(
                f"SELECT key, content_hash FROM metering_eventkey "
                f"WHERE key IN ({', '.join(['%s'] * len(part))})",
                part,
            )
            conflicts.update(k for k, h in cur.fetchall() if h != hashes[k])
    if conflicts:
        conflicts -= _taken_versions(conflicts, ordered)
    return Stored(inserted, conflicts)
