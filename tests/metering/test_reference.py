"""The in-process copy of the metric catalog and customer mappings (metering.reference): a
change anywhere is seen by the next batch, and a mapping never strands an event in hold."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections, transaction

from core.models import Currency, Customer, LegalEntity
from core.actors import Actor
from metering import reference
from metering.services import ingest as services  # the module usage_ingest runs in
from metering.models import CustomerMapping, HeldEvent, UsageEvent
from metering.services import customer_mapping_create, usage_ingest
from tests.conftest import requires_postgres
from tests.metering.factories import TEST_ACTOR, make_metric

pytestmark = pytest.mark.django_db


def ingest(*events: dict[str, Any]) -> list[str]:
    result = usage_ingest(items=[(e, e) for e in events], actor=TEST_ACTOR)
    return [r["status"] if r["status"] != "rejected" else r["code"] for r in result.results]


def ev(event_id: str, metric: str = "api_calls", ref: str = "acct-1") -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=2)
    return {
        "event_id": event_id,
        "source": "app",
        "customer_ref": ref,
        "metric": metric,
        "timestamp": at.isoformat(),
    }


def test_every_change_to_metrics_or_mappings_moves_the_generation(
    customer_acme: Customer,
) -> None:
    seen = [reference.generation()]
    version = make_metric("api_calls")
    seen.append(reference.generation())
    mapping = CustomerMapping.objects.create(
        source="app", customer_ref="acct-1", customer=customer_acme
    )
    seen.append(reference.generation())
    CustomerMapping.objects.filter(pk=mapping.pk).update(customer_ref="acct-2")
    seen.append(reference.generation())
    type(version).objects.filter(pk=version.pk).update(value_property="n")
    seen.append(reference.generation())
    CustomerMapping.objects.filter(pk=mapping.pk).delete()
    seen.append(reference.generation())
    assert len(set(seen)) == len(seen), seen


def test_a_rolled_back_change_rolls_back_its_generation(customer_acme: Customer) -> None:
    before = reference.generation()
    with pytest.raises(RuntimeError), transaction.atomic():
        CustomerMapping.objects.create(source="app", customer_ref="x", customer=customer_acme)
        inside = reference.generation()
        assert inside != before
        raise RuntimeError("roll back")
    assert reference.generation() == before
    CustomerMapping.objects.create(source="app", customer_ref="y", customer=customer_acme)
    assert reference.generation() not in (before, inside)  # never reused


def test_a_metric_created_after_the_copy_was_read_is_accepted_at_once(
    customer_acme: Customer,
) -> None:
    make_metric("api_calls")
    CustomerMapping.objects.create(source="app", customer_ref="acct-1", customer=customer_acme)
    assert ingest(ev("a1")) == ["accepted"]  # this process now holds the catalog
    make_metric("storage_events")
    assert ingest(ev("a2", metric="storage_events")) == ["accepted"]


def test_a_mapping_changed_in_the_database_is_followed(customer_acme: Customer) -> None:
    make_metric("api_calls")
    mapping = CustomerMapping.objects.create(
        source="app", customer_ref="acct-1", customer=customer_acme
    )
    globex = Customer.objects.create(
        legal_entity=customer_acme.legal_entity, code="globex", name="Globex"
    )
    assert ingest(ev("m1")) == ["accepted"]
    CustomerMapping.objects.filter(pk=mapping.pk).update(customer=globex)  # not via a service
    assert ingest(ev("m2")) == ["accepted"]
    assert UsageEvent.objects.get(event_id="m1").customer_id == customer_acme.pk
    assert UsageEvent.objects.get(event_id="m2").customer_id == globex.pk


def test_a_stale_copy_is_caught_inside_the_transaction(
    customer_acme: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_metric("api_calls")
    CustomerMapping.objects.create(source="app", customer_ref="acct-1", customer=customer_acme)
    # A copy that knows no metric: used as is, every event would be rejected.
    monkeypatch.setattr(reference, "_current", reference.Reference(generation=-1, catalog={}))
    assert ingest(ev("s1")) == ["accepted"]
    assert reference.current().generation == reference.generation()


def test_a_batch_still_lands_when_the_reference_keeps_changing(
    customer_acme: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_metric("api_calls")
    CustomerMapping.objects.create(source="app", customer_ref="acct-1", customer=customer_acme)
    calls = []

    def always_stale(expected: int, seen: int | None = None) -> None:
        calls.append(expected)
        raise reference.Stale

    monkeypatch.setattr(reference, "confirm", always_stale)
    assert ingest(ev("c1"), ev("c2", ref="unknown")) == ["accepted", "held"]
    assert len(calls) == services.STALE_RETRIES  # rounds, then one read under the lock
    assert UsageEvent.objects.filter(event_id="c1").count() == 1
    assert HeldEvent.objects.filter(event_id="c2").count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_new_mapping_waits_for_a_running_batch_and_releases_what_it_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usd = Currency.objects.get_or_create(
        code="USD", defaults={"name": "US Dollar", "minor_units": 2}
    )[0]
    entity = LegalEntity.objects.create(code="ll-us", name="LL", base_currency=usd, country="US")
    acme = Customer.objects.create(legal_entity=entity, code="acme", name="Acme")
    make_metric("api_calls")
    batch_stored, finish_batch, mapping_done = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    errors: list[BaseException] = []
    open_cases = services._open_unmapped_cases

    def pause_after_storing_held(*args: Any, **kwargs: Any) -> Any:
        # The batch has written its held event and has not yet written anything else (no audit
        # entry, whose chain lock would serialise the two by chance): pause here.
        batch_stored.set()
        finish_batch.wait(10)
        return open_cases(*args, **kwargs)

    monkeypatch.setattr(services, "_open_unmapped_cases", pause_after_storing_held)

    def running_batch() -> None:
        try:
            assert ingest(ev("r1", ref="new-acct")) == ["held"]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def add_mapping() -> None:
        try:
            customer_mapping_create(
                source="app", customer_ref="new-acct", customer=acme, actor=Actor.system("t")
            )
            mapping_done.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    batch = threading.Thread(target=running_batch)
    batch.start()
    assert batch_stored.wait(10)
    mapper = threading.Thread(target=add_mapping)
    mapper.start()
    time.sleep(0.5)
    assert not mapping_done.is_set(), "the mapping must wait for the running batch"
    finish_batch.set()
    batch.join(10)
    mapper.join(10)
    assert not errors, errors
    assert mapping_done.is_set()
    held = HeldEvent.objects.get(event_id="r1")
    assert held.released_at is not None, "the held event was stranded"
    assert UsageEvent.objects.get(event_id="r1").customer_id == acme.pk
