"""CloudEvents as the official Python SDK (cloudevents 2.x) sends them: structured, binary and
batch, with non-ASCII and reserved characters in every attribute (the HTTP binding's binary
mode percent-encodes header values; the server decodes them)."""

from __future__ import annotations

from tests.metering.conftest import KeyedClient, as_dict

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from core.models import Customer
from metering.models import CustomerMapping, HeldEvent, RejectedEvent, UsageEvent

pytestmark = pytest.mark.usefixtures("metrics")

SOURCE = 'app/ü ?%#&+"'  # space, percent, quote, and what a URL reserves
SUBJECT = "Globex Europe/üñí %20 ;,=日本"  # '%20' is a literal here: sent as %2520
ID = "é-1 %25 / ?"


@pytest.fixture
def globex(customer_acme: Customer) -> CustomerMapping:
    return CustomerMapping.objects.create(
        source=SOURCE, customer_ref=SUBJECT, customer=customer_acme
    )


def cloudevent(event_id: str = ID, **attributes: Any) -> CloudEvent:
    data = attributes.pop("data", {"value": 3, "region": "eu"})
    base = {
        "id": event_id,
        "source": SOURCE,
        "type": "storage_gb",
        "subject": SUBJECT,
        "time": datetime.now(UTC) - timedelta(minutes=1),
    }
    return CloudEvent(attributes={**base, **attributes}, data=data)


def send_binary(writer: Any, message: http.HTTPMessage, drop: tuple[str, ...] = ()) -> Any:
    """POST an SDK HTTPMessage as Django's test client takes it (headers as WSGI variables)."""
    wsgi = {
        "HTTP_" + name.upper().replace("-", "_"): value
        for name, value in message.headers.items()
        if name.lower() != "content-type" and name not in drop
    }
    return writer.generic(
        "POST",
        "/api/v1/events",
        data=message.body,
        content_type=message.headers.get("content-type", ""),
        **wsgi,
    )


def test_binary_mode_attributes_are_percent_decoded(
    writer: KeyedClient, globex: CustomerMapping
) -> None:
    message = http.to_binary_event(cloudevent())
    assert message.headers["ce-subject"].startswith("Globex%20Europe/%C3%BC")  # as the SDK sends
    assert "content-type" not in message.headers  # no datacontenttype: JSON data, no header
    resp = send_binary(writer, message)
    assert resp.status_code == 200, resp.content
    assert resp.json()["results"][0]["status"] == "accepted", resp.json()
    stored = UsageEvent.objects.get()
    assert (stored.source, stored.event_id, stored.customer_ref) == (SOURCE, ID, SUBJECT)
    assert stored.value == Decimal(3) and stored.properties == {"region": "eu"}
    assert not HeldEvent.objects.exists()


def test_binary_mode_with_a_content_type(writer: KeyedClient, globex: CustomerMapping) -> None:
    event = cloudevent("b-2", datacontenttype="application/json")
    message = http.to_binary_event(event)
    assert message.headers["content-type"] == "application/json"
    assert send_binary(writer, message).json()["counts"]["accepted"] == 1


def test_binary_mode_without_a_content_type_and_not_json_says_what_it_expected(
    writer: KeyedClient, globex: CustomerMapping
) -> None:
    message = http.HTTPMessage(headers=http.to_binary_event(cloudevent()).headers, body=b"three")
    result = send_binary(writer, message).json()["results"][0]
    assert result["status"] == "rejected" and result["code"] == "event_malformed"
    assert "without a Content-Type must carry JSON data" in result["message"]
    assert as_dict(RejectedEvent.objects.get().raw)["data"] == "three"


def test_a_header_that_is_not_percent_encoded_utf8_is_rejected_by_name(
    writer: KeyedClient, globex: CustomerMapping
) -> None:
    message = http.to_binary_event(cloudevent())
    bad = http.HTTPMessage(
        headers={**message.headers, "ce-subject": "acct-%C3%28"}, body=message.body
    )
    result = send_binary(writer, bad).json()["results"][0]
    assert result["code"] == "event_malformed" and "ce-subject" in result["message"]
    assert RejectedEvent.objects.get().source == SOURCE  # decoded: the refusal is identifiable


def test_an_event_without_time_takes_its_receipt_time_and_says_so(
    writer: KeyedClient, globex: CustomerMapping
) -> None:
    before = datetime.now(UTC)
    message = http.to_binary_event(cloudevent())
    result = send_binary(writer, message, drop=("ce-time",)).json()["results"][0]
    assert result["status"] == "accepted"
    assert "no 'time'" in result["message"] and "receipt" in result["message"]
    assert before <= UsageEvent.objects.get().timestamp <= datetime.now(UTC)
    structured = orjson.loads(JSONFormat().write(cloudevent("s-no-time")))
    del structured["time"]
    resp = writer.post(
        "/api/v1/events",
        data=orjson.dumps(structured),
        content_type="application/cloudevents+json",
    )
    assert "receipt" in resp.json()["results"][0]["message"]


def test_structured_mode(writer: KeyedClient, globex: CustomerMapping) -> None:
    message = http.to_structured_event(cloudevent())
    resp = writer.post(
        "/api/v1/events", data=message.body, content_type=message.headers["content-type"]
    )
    assert resp.json()["results"][0]["status"] == "accepted", resp.json()
    stored = UsageEvent.objects.get()
    assert (stored.source, stored.event_id, stored.customer_ref) == (SOURCE, ID, SUBJECT)


def test_batch_mode_and_an_empty_batch(writer: KeyedClient, globex: CustomerMapping) -> None:
    events = [cloudevent(f"{ID}-{n}") for n in range(3)] + [cloudevent("x/ü", type="nö/such ?")]
    body = b"[" + b",".join(JSONFormat().write(e) for e in events) + b"]"
    resp = writer.post(
        "/api/v1/events", data=body, content_type="application/cloudevents-batch+json"
    )
    results = resp.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 3 + ["rejected"]
    assert results[3]["message"] == "There is no metric with code 'nö/such ?'."
    empty = writer.post(
        "/api/v1/events", data=b"[]", content_type="application/cloudevents-batch+json"
    )
    assert empty.status_code == 200
    assert empty.json()["counts"] == {
        "received": 0,
        "accepted": 0,
        "duplicate": 0,
        "rejected": 0,
        "held": 0,
    }
    assert empty.json()["results"] == []


def test_rejections_name_the_cloudevents_attributes(
    writer: KeyedClient, globex: CustomerMapping
) -> None:
    no_subject = orjson.loads(JSONFormat().write(cloudevent("n-1")))
    del no_subject["subject"]
    bad_time = {**orjson.loads(JSONFormat().write(cloudevent("n-2"))), "time": "yesterday"}
    body = orjson.dumps([no_subject, bad_time])
    resp = writer.post(
        "/api/v1/events", data=body, content_type="application/cloudevents-batch+json"
    )
    first, second = resp.json()["results"]
    assert first["code"] == "missing_field" and first["message"] == "The event has no 'subject'."
    assert second["code"] == "invalid_timestamp" and "'time'" in second["message"]
    assert "'timestamp'" not in second["message"]
    assert "The event has no 'subject'." in {r.message for r in RejectedEvent.objects.all()}
