"""Exactly once under concurrent delivery, against PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections

from core.models import ApiKey, Currency, Customer, LegalEntity
from core.actors import Actor
from metering.models import CustomerMapping, EventKey, IngestTally, UsageEvent
from metering.partitions import partition_name
from metering.services import IngestCounts, usage_ingest, usage_summarize_window
from tests.conftest import requires_postgres
from tests.metering.factories import make_metric

THREADS = 6


def _acme_mapped_and_a_metric() -> None:
    """Committed data (these tests run threads, each on its own connection)."""
    usd = Currency.objects.get_or_create(
        code="USD", defaults={"name": "US Dollar", "minor_units": 2}
    )[0]
    entity = LegalEntity.objects.create(code="ll-us", name="LL", base_currency=usd, country="US")
    acme = Customer.objects.create(legal_entity=entity, code="acme", name="Acme")
    CustomerMapping.objects.create(source="app", customer_ref="acct-1", customer=acme)
    make_metric("api_calls")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_same_events_sent_by_several_clients_at_once_count_once() -> None:
    _acme_mapped_and_a_metric()
    key = ApiKey.objects.create(name="producer", prefix="p1", key_hash="x", scopes=["usage:write"])
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    # Every thread sends the same 300 events, each in its own order, overlapping in time.
    events = [
        {
            "event_id": f"e{i}",
            "source": "app",
            "customer_ref": "acct-1",
            "metric": "api_calls",
            "timestamp": ts,
        }
        for i in range(300)
    ]
    barrier = threading.Barrier(THREADS)
    outcomes: list[IngestCounts] = []
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            batch = events[n * 37 :] + events[: n * 37] if n % 2 else list(reversed(events))
            barrier.wait()
            result = usage_ingest(
                items=[(e, e) for e in batch], actor=Actor.for_api_key(key), api_key=key
            )
            outcomes.append(result.counts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(o["accepted"] for o in outcomes) == 300
    assert sum(o["duplicate"] for o in outcomes) == 300 * (THREADS - 1)
    assert UsageEvent.objects.count() == 300 and EventKey.objects.count() == 300
    tally = IngestTally.objects.get(source="app")
    assert (tally.accepted, tally.duplicate) == (300, 300 * (THREADS - 1))

    # The events land in their month's partition, not the default one.
    at = datetime.fromisoformat(ts)
    assert _count(partition_name(at.year, at.month)) == 300
    assert _count("metering_usageevent_default") == 0
    summary = usage_summarize_window(
        period_start=at - timedelta(days=1),
        period_end=at + timedelta(days=1),
        actor=Actor.system("t"),
    )
    assert [s.quantity for s in summary] == [300]


def _count(table: str) -> Any:
    with connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - our own table names
        return cur.fetchone()[0]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_stored_by_another_batch_after_the_lookup_makes_a_duplicate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batch A stores key k and stays open; batch B's lookup cannot see k, its plain insert waits
    for A, fails when A commits, and B runs again the safe way: k counts once, B gets duplicate."""
    from metering import event_store
    from metering.services import ingest as services  # where usage_ingest looks it up
    from metering.services.tallies import _tally_add

    _acme_mapped_and_a_metric()
    event = {
        "event_id": "k",
        "source": "app",
        "customer_ref": "acct-1",
        "metric": "api_calls",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    a_stored, a_go = threading.Event(), threading.Event()
    races: list[str] = []
    tally = _tally_add  # the function services.ingest imported
    optimistic = event_store._keys_optimistic

    def pause_in_a(*args: Any, **kwargs: Any) -> None:  # A has stored its key and its event
        if threading.current_thread().name == "A":
            a_stored.set()
            a_go.wait(10)
        tally(*args, **kwargs)

    def count_races(*args: Any, **kwargs: Any) -> Any:
        try:
            return optimistic(*args, **kwargs)
        except event_store.KeyRace:
            races.append(threading.current_thread().name)
            raise

    monkeypatch.setattr(services, "_tally_add", pause_in_a)
    monkeypatch.setattr(event_store, "_keys_optimistic", count_races)
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def send() -> None:
        try:
            result = usage_ingest(items=[(event, event)], actor=Actor.system("t"))
            outcomes[threading.current_thread().name] = result.results[0]["status"]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    a = threading.Thread(target=send, name="A")
    a.start()
    assert a_stored.wait(10)
    b = threading.Thread(target=send, name="B")
    b.start()
    b.join(0.5)
    assert b.is_alive(), "B must wait for A's key"
    a_go.set()
    a.join(10)
    b.join(10)
    assert not errors, errors
    assert outcomes == {"A": "accepted", "B": "duplicate"}
    assert races == ["B"]
    assert UsageEvent.objects.filter(event_id="k").count() == 1
    assert EventKey.objects.filter(key="app\tk").count() == 1


@requires_postgres
@pytest.mark.django_db
def test_event_keys_compare_byte_by_byte() -> None:
    """Migration 0007: the key index compares bytes (COLLATE "C"), whatever the database's default
    collation: ids differing only in case or accents are different events, and the index order is
    the code point order in which every batch stores its keys (no deadlocks)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_name = 'metering_eventkey' AND column_name = 'key'"
        )
        assert cur.fetchone() == ("C",)
    _acme_mapped_and_a_metric()
    at = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    events = [
        {
            "event_id": e,
            "source": "app",
            "customer_ref": "acct-1",
            "metric": "api_calls",
            "timestamp": at,
        }
        for e in ("e-a", "E-A", "é-a", "e-A")
    ]
    result = usage_ingest(items=[(e, e) for e in events], actor=Actor.system("t"))
    assert result.counts["accepted"] == 4
    assert sorted(EventKey.objects.values_list("key", flat=True)) == sorted(
        f"app\t{e['event_id']}" for e in events
    )
    with connection.cursor() as cur:
        cur.execute("SELECT array_agg(key ORDER BY key) FROM metering_eventkey")
        assert cur.fetchone()[0] == sorted(f"app\t{e['event_id']}" for e in events)


PRODUCERS = 12


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_mixed_traffic_from_many_producers_neither_deadlocks_nor_loses_an_event() -> None:
    """12 producers at once, batches clean or with a bad metric, a bad timestamp or unmapped
    customers (the same few, so their exception cases overlap), on sources they share: each
    transaction takes the control totals, the cases and the audit chain head in one order
    (core/locks.py), so none fails, and every event is counted once."""
    _acme_mapped_and_a_metric()
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    barrier = threading.Barrier(PRODUCERS)
    outcomes: list[IngestCounts] = []
    errors: list[BaseException] = []

    def event(p: int, b: int, i: int) -> dict[str, Any]:
        ev = {
            "event_id": f"p{p}-b{b}-{i}",
            "source": ("app", "web")[(p + i) % 2] if i % 3 else "app",
            "customer_ref": "acct-1",
            "metric": "api_calls",
            "timestamp": ts,
        }
        kind = (p + b) % 4  # 0: clean; 1: a bad metric; 2: a bad timestamp; 3: unmapped
        if kind == 1 and i % 5 == 0:
            ev["metric"] = "no_such_metric"
        elif kind == 2 and i % 5 == 0:
            ev["timestamp"] = "yesterday"
        elif kind == 3 and i % 4 == 0:
            ev["customer_ref"] = f"new-{i % 3}"
        return ev

    def produce(p: int) -> None:
        try:
            barrier.wait()
            for b in range(5):
                batch = [event(p, b, i) for i in range(40)]
                if p % 2:
                    batch.reverse()
                result = usage_ingest(items=[(e, e) for e in batch], actor=Actor.system(f"p{p}"))
                outcomes.append(result.counts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    sent = PRODUCERS * 5 * 40
    totals = {k: sum(o[k] for o in outcomes) for k in ("accepted", "held", "rejected", "duplicate")}
    assert totals["duplicate"] == 0 and sum(totals.values()) == sent
    assert totals["rejected"] > 0 and totals["held"] > 0
    from metering.models import HeldEvent, RejectedEvent

    assert EventKey.objects.count() == totals["accepted"] + totals["held"]
    assert UsageEvent.objects.count() == totals["accepted"]
    assert HeldEvent.objects.count() == totals["held"]
    assert RejectedEvent.objects.count() == totals["rejected"]
    tallies = IngestTally.objects.all()
    assert sum(t.accepted + t.held + t.rejected for t in tallies) == sent
