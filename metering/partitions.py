"""Monthly partitions of the event table on PostgreSQL, created on demand.

The default partition catches any month without its own, so an insert never
fails; ensure_months creates the partitions of the months a batch touches
before the batch's transaction (a month whose rows already sit in the default
partition keeps them there: PostgreSQL refuses to create its partition, which
is logged, not fatal).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.db import DatabaseError, connection, transaction

from core import locks

log = logging.getLogger(__name__)
_known: set[tuple[int, int]] = set()
PARTITION_LOCK = locks.PARTITION


def partition_name(year: int, month: int) -> str:
    return f"metering_usageevent_p{year:04d}{month:02d}"


def ensure_months(months: Iterable[tuple[int, int]]) -> None:
    missing = sorted(set(months) - _known)
    for year, month in missing:
        nxt = (year + 1, 1) if month == 12 else (year, month + 1)
        name = partition_name(year, month)
        sql = (
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF metering_usageevent FOR VALUES "
            f"FROM ('{year:04d}-{month:02d}-01 00:00:00+00') TO ('{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00')"
        )
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK])
                cur.execute("SELECT to_regclass(%s)", [name])
                if cur.fetchone()[0] is None:
                    cur.execute(sql)
        except DatabaseError as exc:
            log.warning(
                "partition %s not created (rows stay in the default partition): %s", name, exc
            )
            _known.add((year, month))
            continue
        transaction.on_commit(partial(_known.add, (year, month)))
