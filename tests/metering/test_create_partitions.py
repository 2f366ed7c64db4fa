"""manage.py create_partitions makes the coming months' partitions (issue 12, item 5)."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

from metering import partitions
from metering.management.commands.create_partitions import months_around

pytestmark = pytest.mark.django_db


def test_months_around_crosses_the_year() -> None:
    got = [(y, m + 1) for y, m in months_around(datetime(2026, 12, 5, tzinfo=UTC), 1, 2)]
    assert got == [(2026, 11), (2026, 12), (2027, 1), (2027, 2)]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")
def test_the_coming_months_partitions_exist_afterwards() -> None:
    partitions._known.clear()
    out = io.StringIO()
    call_command("create_partitions", ahead=4, back=0, stdout=out)
    now = datetime.now(UTC)
    with connection.cursor() as cur:
        for y, m in months_around(now, 0, 4):
            cur.execute("SELECT to_regclass(%s)", [partitions.partition_name(y, m + 1)])
            assert cur.fetchone()[0] is not None, (y, m + 1)
    assert "exist" in out.getvalue()
