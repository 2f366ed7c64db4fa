"""The control totals per source and day: received = accepted + duplicate + rejected + held."""

from __future__ import annotations

from django.db import connection

TALLY_COLUMNS = ("accepted", "duplicate", "rejected", "held", "released")


def _tally_add(tally: dict[tuple[str, str], dict[str, int]]) -> None:
    """Add to the control totals (one upsert per source and day, in key order: no deadlocks)."""
    if not tally:
        return
    cols = ", ".join(TALLY_COLUMNS)
    updates = ", ".join(f"{c} = metering_ingesttally.{c} + excluded.{c}" for c in TALLY_COLUMNS)
    sql = (
        f"INSERT INTO metering_ingesttally (source, day, {cols}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (source, day) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cur:
        for (source, day), c in sorted(tally.items()):
            cur.execute(sql, [source, day, *(c.get(col, 0) for col in TALLY_COLUMNS)])
