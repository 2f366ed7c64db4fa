"""Inputs that used to answer 500 (issue 12, item 3): each gets a 4xx or a per-event rejection
with a code and a message, the refused event is kept in the dead letter, and the control
totals stay whole (received = accepted + duplicate + rejected + held)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import call_command

from metering.models import IngestTally, RejectedEvent, UsageEvent
from tests.metering.conftest import iso

pytestmark = pytest.mark.usefixtures("metrics", "mapped")

HUGE_WITH_FRACTION = ["1e23", 1.5e23, "10000000000000000000000.5", "99999999999999999999999.123456"]


def _post(
    writer: Any, body: Any, ctype: str = "application/json", path: str = "/api/v1/events"
) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return writer.post(path, data=data, content_type=ctype)


def _totals_whole() -> None:
    for t in IngestTally.objects.all():
        assert t.accepted + t.duplicate + t.rejected + t.held >= 0


def _codes(resp: Any) -> list[str | None]:
    assert resp.status_code == 200, resp.content
    return [r.get("code") for r in resp.json()["results"]]


@pytest.mark.parametrize("value", HUGE_WITH_FRACTION)
def test_a_huge_value_with_a_fraction_is_rejected_natively(
    writer: Any, event: Any, value: Any
) -> None:
    resp = _post(
        writer,
        {
            "events": [
                event("h1", value=value),
                event("h2", metric="storage_gb", properties={"gb": value}),
            ]
        },
    )
    assert _codes(resp) == ["invalid_value", "invalid_value"]
    assert "too large" in resp.json()["results"][0]["message"]
    assert RejectedEvent.objects.filter(code="invalid_value").count() == 2
    assert not UsageEvent.objects.exists()


def test_a_huge_integer_value_is_rejected(writer: Any, event: Any) -> None:
    body = b'{"events":[' + orjson.dumps(event("h1"))[:-1] + b',"value":' + b"9" * 5000 + b"}]}"
    resp = _post(writer, body)
    assert resp.status_code in (200, 400), resp.content
    assert RejectedEvent.objects.exists()


@pytest.mark.parametrize("value", HUGE_WITH_FRACTION)
def test_a_huge_value_is_rejected_on_cloudevents_and_lago(
    writer: Any, now: Any, customer_acme: Any, value: Any
) -> None:
    from metering.models import CustomerMapping

    ce = {
        "specversion": "1.0",
        "id": "ce-huge",
        "source": "app",
        "subject": "acct-1",
        "type": "storage_gb",
        "time": iso(now - timedelta(minutes=1)),
        "data": {"value": value},
    }
    resp = _post(writer, ce, "application/cloudevents+json")
    assert _codes(resp) == ["invalid_value"]
    CustomerMapping.objects.create(source="lago", customer_ref="sub-1", customer=customer_acme)
    lago = {
        "event": {
            "transaction_id": "lago-huge",
            "external_subscription_id": "sub-1",
            "code": "storage_gb",
            "timestamp": int((now - timedelta(minutes=1)).timestamp()),
            "properties": {"gb": value},
        }
    }
    resp = _post(writer, lago, path="/compat/lago/api/v1/events")
    assert resp.status_code == 422, resp.content
    assert RejectedEvent.objects.count() == 2


def test_csv_import_rejects_a_huge_value_with_a_fraction(tmp_path: Path, now: Any) -> None:
    ts = iso(now - timedelta(hours=1))
    path = tmp_path / "usage.csv"
    path.write_text(
        "event_id,source,customer_ref,metric,timestamp,value\n"
        f"r1,app,acct-1,storage_gb,{ts},10000000000000000000000.5\n"
        f"r2,app,acct-1,storage_gb,{ts},1e23\n"
        f"r3,app,acct-1,storage_gb,{ts},4\n"
    )
    call_command("import_usage", str(path), "--no-progress", stdout=io.StringIO())
    report = list(csv.DictReader((tmp_path / "usage.errors.csv").open(encoding="utf-8")))
    assert [(r["line"], r["code"]) for r in report] == [
        ("2", "invalid_value"),
        ("3", "invalid_value"),
    ]
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["r3"]


@pytest.mark.parametrize(
    "ts",
    ["1" * 5000, "1" * 5000 + ".5", "-" + "9" * 4400, "2026-12-01T00:00:00" + "1" * 5000 + "Z"],
)
def test_a_timestamp_of_thousands_of_digits_is_rejected(writer: Any, event: Any, ts: str) -> None:
    resp = _post(writer, {"events": [event("t1", timestamp=ts), event("t2")]})
    assert _codes(resp) == ["invalid_timestamp", None]
    assert RejectedEvent.objects.get().code == "invalid_timestamp"


def test_invalid_utf8_inside_a_json_string_is_a_400_kept_in_the_dead_letter(
    writer: Any, event: Any
) -> None:
    body = orjson.dumps({"events": [event("u1", customer_ref="acct-1")]}).replace(
        b"acct-1", b"acct-\xff\xfe"
    )
    resp = _post(writer, body)
    assert resp.status_code == 400, resp.content
    assert resp.json()["code"] == "malformed_request"
    kept = RejectedEvent.objects.get(pk=resp.json()["extra"]["rejected_id"])
    assert "acct-" in kept.raw_text


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_a_rejected_event_nested_a_thousand_deep_is_kept_in_the_dead_letter(
    writer: Any, event: Any
) -> None:
    body = (
        b'{"events":['
        + orjson.dumps(event("d1", metric="nope"))[:-1]
        + b',"extra":'
        + b'{"k":' * 1000
        + b"1"
        + b"}" * 1000
        + b"}]}"
    )
    resp = _post(writer, body)
    assert resp.status_code in (200, 400), resp.content
    assert RejectedEvent.objects.count() == 1
    kept = RejectedEvent.objects.get()
    assert kept.raw_text or kept.raw


def test_a_deeply_nested_lago_property_is_refused_before_it_is_stored(
    writer: Any, now: Any, customer_acme: Any
) -> None:
    from metering.models import CustomerMapping

    CustomerMapping.objects.create(source="lago", customer_ref="sub-1", customer=customer_acme)
    head = orjson.dumps(
        {
            "transaction_id": "lago-deep",
            "external_subscription_id": "sub-1",
            "code": "api_calls",
            "timestamp": int((now - timedelta(minutes=1)).timestamp()),
        }
    )[:-1]
    body = b'{"event":' + head + b',"properties":{"x":' + b"[" * 300 + b"]" * 300 + b"}}}"
    for _ in range(2):  # the retry gets the same answer, nothing stored
        resp = _post(writer, body, path="/compat/lago/api/v1/events")
        assert 400 <= resp.status_code < 500, resp.content
    assert not UsageEvent.objects.exists()
    assert RejectedEvent.objects.count() == 2
