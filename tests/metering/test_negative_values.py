"""A metric says whether it accepts negative values (default: no); a negative value where it does
not is rejected at intake with `negative_value` on every path, not accepted and failed at billing."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from django.core.management import call_command

from core.models import Customer
from metering.models import MetricVersion, RejectedEvent, UsageEvent
from tests.metering.conftest import KeyedClient, iso
from tests.metering.factories import make_metric

pytestmark = pytest.mark.usefixtures("metrics", "mapped")


@pytest.fixture
def credits(db: None) -> MetricVersion:
    return make_metric("credits", "sum", "amount", accepts_negative=True)


def _results(resp: Any) -> list[tuple[str, str | None]]:
    assert resp.status_code == 200, resp.content
    return [(r["status"], r.get("code")) for r in resp.json()["results"]]


def test_native_json_rejects_a_negative_value_on_both_paths(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    batch = [
        event("n1", metric="storage_gb", value="-2.5"),  # typed path
        event("n2", metric="storage_gb", value=-1),
        event("n3", metric="storage_gb", properties={"gb": "-3"}),  # value from the property
        event("n4\u0007", metric="storage_gb", value="-1"),  # control char: general path
        event("n5", metric="storage_gb", value="0"),
    ]
    resp = writer.post(
        "/api/v1/events", data=orjson.dumps({"events": batch}), content_type="application/json"
    )
    results = resp.json()["results"]
    assert [r.get("code") for r in results[:3]] == ["negative_value"] * 3
    assert results[4]["status"] == "accepted"
    assert "Metric 'storage_gb' does not accept negative values" in results[0]["message"]
    assert "-2.5" in results[0]["message"]
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {"n5"}
    assert RejectedEvent.objects.filter(code="negative_value").count() >= 3


def test_an_accepting_metric_takes_negatives(
    writer: KeyedClient, event: Callable[..., dict[str, Any]], credits: MetricVersion
) -> None:
    batch = [event("c1", metric="credits", value="-12.50"), event("c2", metric="credits", value=4)]
    resp = writer.post(
        "/api/v1/events", data=orjson.dumps({"events": batch}), content_type="application/json"
    )
    assert _results(resp) == [("accepted", None), ("accepted", None)]
    assert UsageEvent.objects.get(event_id="c1").value == Decimal("-12.50")


def test_cloudevents_reject_a_negative_value(writer: KeyedClient, now: datetime) -> None:
    body = {
        "specversion": "1.0",
        "id": "ce-neg",
        "source": "app",
        "subject": "acct-1",
        "type": "storage_gb",
        "time": iso(now - timedelta(minutes=1)),
        "datacontenttype": "application/json",
        "data": {"value": "-1"},
    }
    resp = writer.post(
        "/api/v1/events", data=orjson.dumps(body), content_type="application/cloudevents+json"
    )
    assert resp.json()["results"][0]["code"] == "negative_value", resp.content
    assert not UsageEvent.objects.exists()


def test_lago_rejects_a_negative_value(
    writer: KeyedClient, now: datetime, customer_acme: Customer
) -> None:
    from metering.models import CustomerMapping

    CustomerMapping.objects.create(source="lago", customer_ref="sub-1", customer=customer_acme)
    body = {
        "event": {
            "transaction_id": "lago-neg",
            "external_subscription_id": "sub-1",
            "code": "storage_gb",
            "timestamp": int((now - timedelta(minutes=1)).timestamp()),
            "properties": {"gb": "-1.5"},
        }
    }
    resp = writer.post(
        "/compat/lago/api/v1/events", data=orjson.dumps(body), content_type="application/json"
    )
    assert resp.status_code == 422, resp.content
    assert resp.json()["error_details"] == {"properties": ["negative_value"]}
    assert RejectedEvent.objects.get().code == "negative_value"
    assert not UsageEvent.objects.exists()


def test_csv_import_rejects_a_negative_value(tmp_path: Path, now: datetime) -> None:
    ts = iso(now - timedelta(hours=1))
    path = tmp_path / "usage.csv"
    path.write_text(
        "event_id,source,customer_ref,metric,timestamp,value\n"
        f"r1,app,acct-1,storage_gb,{ts},-4\n"
        f"r2,app,acct-1,storage_gb,{ts},4\n"
    )
    call_command("import_usage", str(path), "--no-progress", stdout=io.StringIO())
    report = list(csv.DictReader((tmp_path / "usage.errors.csv").open(encoding="utf-8")))
    assert [(r["line"], r["event_id"], r["code"]) for r in report] == [
        ("2", "r1", "negative_value")
    ]
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["r2"]


def test_a_new_version_can_start_accepting_negatives(
    writer: KeyedClient, event: Callable[..., dict[str, Any]], now: datetime
) -> None:
    from metering.models import MetricDefinition
    from metering.services.metrics import metric_version_add
    from tests.metering.factories import TEST_ACTOR

    metric = MetricDefinition.objects.get(code="storage_gb")
    metric_version_add(
        metric=metric,
        effective_from=now - timedelta(minutes=10),
        accepts_negative=True,
        actor=TEST_ACTOR,
    )
    resp = writer.post(
        "/api/v1/events",
        data=orjson.dumps({"events": [event("v1", metric="storage_gb", value="-1")]}),
        content_type="application/json",
    )
    assert _results(resp) == [("accepted", None)]
