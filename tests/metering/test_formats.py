"""CloudEvents (structured, batch, binary) and Lago-compatible ingestion, with their real client shapes."""

from __future__ import annotations

from rest_framework.test import APIClient
from typing import Any
from collections.abc import Callable
from core.models import Customer
from tests.metering.conftest import KeyedClient

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from metering.models import CustomerMapping, RejectedEvent, UsageEvent
from tests.metering.conftest import iso

pytestmark = pytest.mark.usefixtures("metrics", "mapped")


def ce(event_id: str, now: datetime, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "app",
        "subject": "acct-1",
        "type": "storage_gb",
        "time": iso(now - timedelta(minutes=1)),
        "datacontenttype": "application/json",
        "data": {"value": "2.5", "region": "eu"},
    }
    body.update(kw)
    return body


def test_cloudevents_structured(writer: KeyedClient, now: datetime) -> None:
    resp = writer.post(
        "/api/v1/events",
        data=orjson.dumps(ce("c1", now)),
        content_type="application/cloudevents+json; charset=utf-8",
    )
    assert resp.status_code == 200, resp.content
    assert resp.json()["results"][0]["status"] == "accepted"
    ev = UsageEvent.objects.get(event_id="c1")
    assert (ev.source, ev.customer_ref, ev.value, ev.properties) == (
        "app",
        "acct-1",
        Decimal("2.5"),
        {"region": "eu"},
    )


def test_cloudevents_batch(writer: KeyedClient, now: datetime) -> None:
    batch = [
        ce("c1", now),
        ce("c2", now, type="api_calls", data=None),
        ce("c1", now),
        {"id": "c3", "source": "app"},
    ]
    resp = writer.post(
        "/api/v1/events",
        data=orjson.dumps(batch),
        content_type="application/cloudevents-batch+json",
    )
    assert [r.get("code", r["status"]) for r in resp.json()["results"]] == [
        "accepted",
        "accepted",
        "duplicate",
        "event_malformed",
    ]
    assert RejectedEvent.objects.get().raw == {"id": "c3", "source": "app"}
    not_list = writer.post(
        "/api/v1/events", data=b'{"a": 1}', content_type="application/cloudevents-batch+json"
    )
    assert not_list.status_code == 400 and not_list.json()["code"] == "malformed_request"


def test_cloudevents_binary(writer: KeyedClient, now: datetime) -> None:
    headers: dict[str, Any] = {  # WSGI environ entries, beside post()'s own keywords
        "HTTP_CE_SPECVERSION": "1.0",
        "HTTP_CE_ID": "b1",
        "HTTP_CE_SOURCE": "app",
        "HTTP_CE_SUBJECT": "acct-1",
        "HTTP_CE_TYPE": "storage_gb",
        "HTTP_CE_TIME": iso(now),
    }
    resp = writer.post(
        "/api/v1/events",
        data=b'{"value": 7, "region": "us"}',
        content_type="application/json",
        **headers,
    )
    assert resp.json()["results"][0]["status"] == "accepted", resp.content
    assert UsageEvent.objects.get(event_id="b1").value == Decimal("7")
    bare = writer.post(
        "/api/v1/events", data=b"3", content_type="text/plain", **{**headers, "HTTP_CE_ID": "b2"}
    )
    assert bare.json()["results"][0]["status"] == "accepted"
    assert UsageEvent.objects.get(event_id="b2").value == Decimal("3")


def lago_event(tid: str, now: datetime, **kw: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "transaction_id": tid,
        "external_subscription_id": "sub-1",
        "code": "storage_gb",
        "timestamp": int((now - timedelta(minutes=1)).timestamp()),
        "properties": {"gb": "1.5"},
    }
    ev.update(kw)
    return ev


@pytest.fixture
def lago_mapping(customer_acme: Customer) -> CustomerMapping:
    return CustomerMapping.objects.create(
        source="lago", customer_ref="sub-1", customer=customer_acme
    )


def test_lago_single_event_and_duplicate(
    writer: KeyedClient, now: datetime, lago_mapping: CustomerMapping
) -> None:
    resp = writer.post(
        "/compat/lago/api/v1/events", {"event": lago_event("t1", now)}, format="json"
    )
    assert resp.status_code == 200, resp.content
    out = resp.json()["event"]
    assert out["transaction_id"] == "t1" and out["code"] == "storage_gb"
    assert out["external_subscription_id"] == "sub-1" and out["properties"] == {"gb": "1.5"}
    assert uuid.UUID(out["lago_id"]) and out["created_at"] and out["timestamp"].endswith("Z")
    assert UsageEvent.objects.get(event_id="t1").value == Decimal("1.5")

    again = writer.post(
        "/compat/lago/api/v1/events", {"event": lago_event("t1", now)}, format="json"
    )
    assert again.status_code == 422
    assert again.json() == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"transaction_id": ["value_already_exist"]},
    }


def test_lago_iso_timestamp_and_customer_id(
    writer: KeyedClient, now: datetime, customer_acme: Customer
) -> None:
    CustomerMapping.objects.create(source="lago", customer_ref="cust-9", customer=customer_acme)
    ev = {
        "transaction_id": "t2",
        "external_customer_id": "cust-9",
        "code": "api_calls",
        "timestamp": iso(now - timedelta(hours=1)),
    }
    resp = writer.post("/compat/lago/api/v1/events", {"event": ev}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["event"]["lago_customer_id"] == str(customer_acme.pk)
    no_ts = writer.post(
        "/compat/lago/api/v1/events",
        {"event": {**ev, "transaction_id": "t3", "timestamp": None}},
        format="json",
    )
    assert no_ts.status_code == 200  # Lago stamps the receipt time


def test_lago_batch(writer: KeyedClient, now: datetime, lago_mapping: CustomerMapping) -> None:
    ok = writer.post(
        "/compat/lago/api/v1/events/batch",
        {"events": [lago_event("b1", now), lago_event("b2", now)]},
        format="json",
    )
    assert ok.status_code == 200 and [e["transaction_id"] for e in ok.json()["events"]] == [
        "b1",
        "b2",
    ]
    bad = writer.post(
        "/compat/lago/api/v1/events/batch",
        {
            "events": [
                lago_event("b1", now),
                lago_event("b3", now, timestamp="soon"),
                lago_event("b4", now),
            ]
        },
        format="json",
    )
    assert bad.status_code == 422
    assert bad.json()["error_details"] == {
        "0": {"transaction_id": ["value_already_exist"]},
        "1": {"timestamp": ["invalid_format"]},
    }
    assert UsageEvent.objects.filter(event_id="b4").exists()  # the valid one is kept
    empty = writer.post("/compat/lago/api/v1/events/batch", {"events": []}, format="json")
    assert empty.status_code == 422 and empty.json()["error_details"] == {"events": ["no_events"]}


def test_lago_errors_use_lago_shapes(
    writer: KeyedClient, api_client: Callable[[str], APIClient]
) -> None:
    unauth = api_client("ll_nope_nope").post(
        "/compat/lago/api/v1/events", {"event": {}}, format="json"
    )
    assert unauth.status_code == 401 and unauth.json() == {"status": 401, "error": "Unauthorized"}
    broken = writer.post("/compat/lago/api/v1/events", data=b"{", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["status"] == 400
    assert broken.json()["code"] == "malformed_request"
    wrong = writer.post("/compat/lago/api/v1/events", {"nope": 1}, format="json")
    assert wrong.status_code == 400


@pytest.mark.parametrize(
    "path", ["/compat/lago/api/v1/customers", "/compat/lago/api/v1/events/xyz", "/compat/lago/x"]
)
def test_a_path_lago_compat_does_not_serve_answers_lagos_json_404(
    writer: KeyedClient, path: str
) -> None:
    for resp in (writer.get(path), writer.post(path, {"event": {}}, format="json")):
        assert resp.status_code == 404
        assert resp["Content-Type"] == "application/json"
        body = resp.json()
        assert (body["status"], body["error"], body["code"]) == (404, "Not Found", "not_found")
        assert "/compat/lago/" in body["error_details"]["message"]


def test_the_lago_404_needs_no_csrf_token(db: None) -> None:
    from django.test import Client

    resp = Client(enforce_csrf_checks=True).post(
        "/compat/lago/api/v1/customers", data=b"{}", content_type="application/json"
    )
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
