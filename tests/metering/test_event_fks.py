"""The event table's references hold on PostgreSQL, where they are checked once per statement
(migration 0004) instead of by per-row foreign keys: an event cannot point at a missing customer
or metric version, by INSERT or by COPY, and a referenced customer or version cannot go."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from core.models import Customer
from metering import event_store
from metering.models import UsageEvent
from tests.conftest import requires_postgres
from tests.metering.factories import make_metric, put_event

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)
COPY = event_store.PG_COPY_EVENTS  # the statement ingest runs

pytestmark = [requires_postgres, pytest.mark.django_db]


def copy_events(rows: list[tuple[int, int, int]]) -> None:
    """COPY one event per (customer_id, metric_id, metric_version_id)."""
    text = "".join(
        f"app\tcopy-{n}\tref\t{c}\t{m}\t{v}\t{AT.isoformat()}\t1\t{{}}\t{AT.isoformat()}\t\\N\n"
        for n, (c, m, v) in enumerate(rows)
    )
    with connection.cursor() as cur, connection.wrap_database_errors:
        cur.copy_expert(COPY, io.StringIO(text))


def test_copy_refuses_a_batch_with_one_missing_customer_or_version(customer_acme: Customer) -> None:
    version = make_metric("api_calls")
    good = (customer_acme.pk, version.metric_id, version.pk)
    with pytest.raises(IntegrityError, match="customer_id"), transaction.atomic():
        copy_events([good, (customer_acme.pk + 10_000, version.metric_id, version.pk), good])
    with pytest.raises(IntegrityError, match="metric_version_id"), transaction.atomic():
        copy_events([good, (customer_acme.pk, version.metric_id, version.pk + 10_000)])
    assert UsageEvent.objects.count() == 0
    copy_events([good, good])  # the same rows with valid references go in
    assert UsageEvent.objects.count() == 2


def test_insert_refuses_a_missing_metric_version(customer_acme: Customer) -> None:
    metric = make_metric("api_calls").metric
    event = put_event(customer=customer_acme, metric=metric, at=AT)
    with pytest.raises(IntegrityError, match="metric_version_id"), transaction.atomic():
        UsageEvent.objects.create(
            source="app",
            event_id="orphan",
            customer_ref="x",
            customer=customer_acme,
            metric=metric,
            metric_version_id=event.metric_version_id + 10_000,
            timestamp=AT,
            properties={},
            received_at=AT,
        )


def test_a_referenced_customer_or_version_cannot_be_deleted_renumbered_or_truncated(
    customer_acme: Customer,
) -> None:
    version = make_metric("api_calls")
    put_event(customer=customer_acme, metric=version.metric, at=AT)
    spare = Customer.objects.create(
        legal_entity=customer_acme.legal_entity, code="spare", name="Spare"
    )
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses pending deferred checks
        for sql, params in [
            ("DELETE FROM core_customer WHERE id = %s", [customer_acme.pk]),
            ("UPDATE core_customer SET id = id + 100000 WHERE id = %s", [customer_acme.pk]),
            ("DELETE FROM metering_metricversion WHERE id = %s", [version.pk]),
            ("TRUNCATE core_customer CASCADE", None),
            ("TRUNCATE metering_metricversion CASCADE", None),
        ]:
            with pytest.raises(IntegrityError, match="foreign key"), transaction.atomic():
                cur.execute(sql, params)
        # what no event references still goes
        cur.execute("DELETE FROM core_customer WHERE id = %s", [spare.pk])
        assert cur.rowcount == 1
        cur.execute("UPDATE core_customer SET name = 'Acme' WHERE id = %s", [customer_acme.pk])
    assert Customer.objects.filter(pk=customer_acme.pk).exists()
    assert UsageEvent.objects.filter(customer=customer_acme).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_delete_racing_an_insert_is_refused_either_way(customer_acme: Customer) -> None:
    """Two sessions: whichever of insert and delete comes first, the other waits for it and is
    then refused (the per-statement check locks what it references, as an FK does)."""
    import threading

    import psycopg2

    version = make_metric("api_calls")
    late = Customer.objects.create(legal_entity=customer_acme.legal_entity, code="late", name="L")
    params = connection.get_connection_params()
    inserter, deleter = psycopg2.connect(**params), psycopg2.connect(**params)

    def row(n: str, c: int) -> str:
        at = AT.isoformat()
        return f"app\t{n}\tref\t{c}\t{version.metric_id}\t{version.pk}\t{at}\t1\t{{}}\t{at}\t\\N\n"

    outcome: dict[str, str] = {}

    def run(name: str, conn: Any, sql: str, data: str | None = None) -> None:
        try:
            with conn.cursor() as cur:
                cur.copy_expert(sql, io.StringIO(data)) if data else cur.execute(sql)
            conn.commit()
            outcome[name] = "done"
        except psycopg2.Error as exc:
            conn.rollback()
            outcome[name] = exc.pgcode or ""

    try:
        # insert first: the delete waits for it, then sees the event
        with inserter.cursor() as cur:
            cur.copy_expert(COPY, io.StringIO(row("a", customer_acme.pk)))
        t = threading.Thread(
            target=run,
            args=("delete", deleter, f"DELETE FROM core_customer WHERE id = {customer_acme.pk}"),
        )
        t.start()
        t.join(0.5)
        assert t.is_alive()  # waiting for the inserting transaction
        inserter.commit()
        t.join(10)
        assert outcome["delete"] == "23503"
        # delete first: the insert waits for it, then finds the customer gone
        with deleter.cursor() as cur:
            cur.execute(f"DELETE FROM core_customer WHERE id = {late.pk}")
        t = threading.Thread(target=run, args=("insert", inserter, COPY, row("b", late.pk)))
        t.start()
        t.join(0.5)
        assert t.is_alive()
        deleter.commit()
        t.join(10)
        assert outcome["insert"] == "23503"
    finally:
        inserter.close()
        deleter.close()
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["a"]
