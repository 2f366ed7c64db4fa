"""POST /api/v1/events: outcomes per event, exactly once, every rejection code,
malformed requests, held-then-released, dead letter, audit and control totals."""

from __future__ import annotations

from rest_framework.test import APIClient
from collections.abc import Callable
from core.services import IssuedKey
from tests.metering.conftest import KeyedClient

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from django.test import override_settings

from core.models import Customer
from exceptions.models import AuditEntry, ExceptionCase
from metering.models import DuplicateConflict, HeldEvent, IngestTally, RejectedEvent, UsageEvent
from tests.metering.conftest import as_dict, iso

if TYPE_CHECKING:
    from rest_framework.response import _MonkeyPatchedResponse  # the test client's response

pytestmark = pytest.mark.usefixtures("metrics", "mapped")


def post(client: APIClient, events: list[Any]) -> _MonkeyPatchedResponse:
    return client.post(
        "/api/v1/events", data=orjson.dumps({"events": events}), content_type="application/json"
    )


def statuses(resp: _MonkeyPatchedResponse) -> list[str]:
    return [r["status"] for r in resp.json()["results"]]


def test_batch_outcomes_counts_and_one_audit_entry(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    resp = post(
        writer,
        [
            event("e1"),
            event("e2", metric="storage_gb", value="1.25"),
            event("e3", metric="storage_gb", properties={"gb": 2}),
            event("e1"),  # same batch, same content
            event("e4", customer_ref="unknown-acct"),
            event("e5", metric="nope"),
        ],
    )
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert statuses(resp) == ["accepted", "accepted", "accepted", "duplicate", "held", "rejected"]
    assert body["counts"] == {
        "received": 6,
        "accepted": 3,
        "duplicate": 1,
        "rejected": 1,
        "held": 1,
    }
    assert body["results"][5]["code"] == "unknown_metric"
    assert (
        "api_calls" not in body["results"][5]["message"] and "nope" in body["results"][5]["message"]
    )
    assert UsageEvent.objects.count() == 3
    values = dict(UsageEvent.objects.values_list("event_id", "value"))
    assert values == {"e1": None, "e2": Decimal("1.25"), "e3": Decimal("2")}
    ev = UsageEvent.objects.get(event_id="e1")
    assert ev.api_key_id == writer.api_key.pk and ev.metric_version.version == 1
    entries = AuditEntry.objects.filter(action="usage.ingest")
    assert entries.count() == 1
    assert (
        as_dict(entries.get().after)["accepted"] == 3
        and entries.get().actor_api_key_id == writer.api_key.pk
    )


def test_exactly_once_across_batches_and_conflict_case(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    assert statuses(post(writer, [event("a"), event("b")])) == ["accepted", "accepted"]
    again = post(
        writer, [event("a"), event("b", customer_ref="acct-1", properties={"x": 1}), event("c")]
    )
    assert statuses(again) == ["duplicate", "duplicate", "accepted"]
    assert UsageEvent.objects.count() == 3
    # b came back with different content: the original stands, finance gets one case.
    case = ExceptionCase.objects.get(kind="duplicate_conflict")
    assert case.occurrence_count == 1
    conflict = DuplicateConflict.objects.get()
    assert (
        conflict.event_id == "b"
        and conflict.raw["properties"] == {"x": 1}
        and conflict.case == case
    )
    assert UsageEvent.objects.get(event_id="b").properties == {}


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"event_id": ""}, "missing_field"),
        ({"source": None}, "missing_field"),
        ({"customer_ref": ["x"]}, "invalid_field"),
        ({"timestamp": "yesterday"}, "invalid_timestamp"),
        ({"timestamp": "2026-11-20T10:00:00"}, "invalid_timestamp"),  # no zone
        ({"metric": "storage_gb", "value": "abc"}, "invalid_value"),
        ({"metric": "storage_gb", "value": "1.0000001"}, "invalid_value"),
        ({"metric": "storage_gb"}, "value_required"),
        (
            {"metric": "storage_gb", "value": 1, "properties": {"region": "mars"}},
            "schema_violation",
        ),
        ({"properties": "not-an-object"}, "invalid_field"),
        ({"metric": "unknown"}, "unknown_metric"),
    ],
)
def test_each_rejection_code_goes_to_the_dead_letter(
    writer: KeyedClient, event: Callable[..., dict[str, Any]], overrides: dict[str, Any], code: str
) -> None:
    ev = {**event("bad"), **overrides}
    resp = post(writer, [ev])
    assert resp.status_code == 200
    result = resp.json()["results"][0]
    assert (result["status"], result["code"]) == ("rejected", code), result
    assert result["message"]
    dead = RejectedEvent.objects.get()
    assert dead.code == code and dead.raw == ev and dead.api_key_id == writer.api_key.pk
    assert dead.case is not None and dead.case.kind == "usage_rejected"


def test_window_codes(
    writer: KeyedClient, event: Callable[..., dict[str, Any]], now: datetime
) -> None:
    resp = post(
        writer,
        [
            event("old", timestamp=iso(now - timedelta(days=35, minutes=1))),
            event("future", timestamp=iso(now + timedelta(minutes=6))),
            event("edge-future", timestamp=iso(now + timedelta(minutes=4))),
            event("unix", timestamp=int((now - timedelta(days=1)).timestamp())),
            event("not-an-object-next"),
            "just a string",
        ],
    )
    results = resp.json()["results"]
    assert [r.get("code", r["status"]) for r in results] == [
        "event_too_old",
        "event_in_future",
        "accepted",
        "accepted",
        "accepted",
        "event_malformed",
    ]


def test_metric_version_in_force_at_event_time(
    writer: KeyedClient, event: Callable[..., dict[str, Any]], now: datetime
) -> None:
    from core.actors import Actor
    from metering.models import MetricDefinition
    from metering.services import metric_version_add

    metric = MetricDefinition.objects.get(code="storage_gb")
    metric_version_add(
        metric=metric,
        effective_from=now - timedelta(days=1),
        actor=Actor.system("t"),
        properties_schema={"type": "object", "required": ["region"]},
    )
    resp = post(
        writer,
        [
            event("before", metric="storage_gb", value=1, timestamp=iso(now - timedelta(days=2))),
            event("after-bad", metric="storage_gb", value=1),
            event("after-ok", metric="storage_gb", value=1, properties={"region": "eu"}),
        ],
    )
    assert [r.get("code", r["status"]) for r in resp.json()["results"]] == [
        "accepted",
        "schema_violation",
        "accepted",
    ]
    assert UsageEvent.objects.get(event_id="after-ok").metric_version.version == 2
    assert UsageEvent.objects.get(event_id="before").metric_version.version == 1


def test_held_then_released_by_a_mapping(
    writer: KeyedClient,
    admin_client: APIClient,
    event: Callable[..., dict[str, Any]],
    customer_acme: Customer,
) -> None:
    other = Customer.objects.create(
        legal_entity=customer_acme.legal_entity, code="globex", name="Globex"
    )
    resp = post(
        writer,
        [
            event("h1", customer_ref="new-acct"),
            event("h2", customer_ref="new-acct", metric="storage_gb", value="4.5"),
        ],
    )
    assert statuses(resp) == ["held", "held"]
    assert (
        post(writer, [event("h1", customer_ref="new-acct")]).json()["results"][0]["status"]
        == "duplicate"
    )
    case = ExceptionCase.objects.get(kind="unmapped_customer")
    assert case.occurrence_count == 2 and case.is_open
    assert UsageEvent.objects.count() == 0

    created = admin_client.post(
        "/api/v1/metering/mappings",
        {"source": "app", "customer_ref": "new-acct", "customer_id": other.pk},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert UsageEvent.objects.filter(customer=other).count() == 2
    assert HeldEvent.objects.filter(released_at__isnull=True).count() == 0
    case.refresh_from_db()
    assert case.status == "resolved"
    assert as_dict(AuditEntry.objects.filter(action="usage.release").get().after)["released"] == 2
    tally = IngestTally.objects.get(source="app")
    assert (tally.held, tally.released, tally.duplicate) == (2, 2, 1)
    dup = admin_client.post(
        "/api/v1/metering/mappings",
        {"source": "app", "customer_ref": "new-acct", "customer_id": other.pk},
        format="json",
    )
    assert dup.status_code == 409 and dup.json()["code"] == "mapping_exists"


def test_control_totals_add_up(writer: KeyedClient, event: Callable[..., dict[str, Any]]) -> None:
    post(
        writer,
        [
            event("t1"),
            event("t2"),
            event("t1"),
            event("t3", metric="nope"),
            event("t4", customer_ref="z"),
        ],
    )
    post(writer, [event("t2")])
    writer.post("/api/v1/events", data=b"{not json", content_type="application/json")
    rows = writer.get("/api/v1/metering/control-totals").json()["results"]
    app = next(r for r in rows if r["source"] == "app")
    assert (app["accepted"], app["duplicate"], app["rejected"], app["held"]) == (2, 2, 1, 1)
    assert app["received"] == 6
    unidentified = next(r for r in rows if r["source"] == "")
    assert unidentified["rejected"] == 1
    assert writer.get("/api/v1/metering/control-totals?date_from=bad").status_code == 400


def test_malformed_requests_are_4xx_and_kept(writer: KeyedClient) -> None:
    not_json = writer.post("/api/v1/events", data=b"{oops", content_type="application/json")
    assert not_json.status_code == 400 and not_json.json()["code"] == "malformed_request"
    assert RejectedEvent.objects.get(pk=not_json.json()["extra"]["rejected_id"]).raw_text == "{oops"

    no_events = writer.post("/api/v1/events", data=b'{"evts": []}', content_type="application/json")
    assert no_events.status_code == 400 and no_events.json()["code"] == "malformed_request"
    assert RejectedEvent.objects.get(pk=no_events.json()["extra"]["rejected_id"]).raw == {
        "evts": []
    }

    empty = writer.post("/api/v1/events", data=b'{"events": []}', content_type="application/json")
    assert empty.status_code == 400 and empty.json()["code"] == "empty_batch"

    wrong_type = writer.post("/api/v1/events", data=b"a,b,c", content_type="text/csv")
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"
    assert (
        RejectedEvent.objects.get(pk=wrong_type.json()["extra"]["rejected_id"]).raw_text == "a,b,c"
    )

    with override_settings(
        LEDGERLINE={
            "EVENT_MAX_AGE_DAYS": 35,
            "EVENT_MAX_FUTURE_SECONDS": 300,
            "MAX_BATCH_EVENTS": 2,
        }
    ):
        too_many = post(writer, [{"event_id": str(i)} for i in range(3)])
    assert too_many.status_code == 413 and too_many.json()["code"] == "batch_too_large"
    assert too_many.json()["extra"]["received"] == 3
    too_many_raw = RejectedEvent.objects.get(pk=too_many.json()["extra"]["rejected_id"]).raw
    assert as_dict(too_many_raw)["events"][2] == {"event_id": "2"}
    assert UsageEvent.objects.count() == 0


def test_scope_is_required(
    make_api_key: Callable[..., IssuedKey],
    api_client: Callable[[str], APIClient],
    event: Callable[..., dict[str, Any]],
) -> None:
    reader = api_client(make_api_key("invoices:read").raw_key)
    resp = post(reader, [event("x")])
    assert resp.status_code == 403 and resp.json()["code"] == "scope_missing"
    assert post(api_client("ll_bad_key"), [event("x")]).status_code == 401


def test_rejected_event_corrected_and_resubmitted(
    writer: KeyedClient, admin_client: APIClient, event: Callable[..., dict[str, Any]]
) -> None:
    post(writer, [event("r1", metric="storage_gb", value="abc")])
    dead = RejectedEvent.objects.get()
    url = f"/api/v1/metering/rejected/{dead.pk}/resubmit"
    still_bad = admin_client.post(
        url, {"event": {**as_dict(dead.raw), "value": "x"}}, format="json"
    )
    assert still_bad.json()["status"] == "rejected" and still_bad.json()["code"] == "invalid_value"
    dead.refresh_from_db()
    assert dead.status == "open"
    fixed = admin_client.post(url, {"event": {**as_dict(dead.raw), "value": "3.5"}}, format="json")
    assert fixed.status_code == 200 and fixed.json()["status"] == "accepted"
    assert UsageEvent.objects.get(event_id="r1").value == Decimal("3.5")
    dead.refresh_from_db()
    assert (dead.status, dead.resubmission_outcome) == ("resubmitted", "accepted")
    assert AuditEntry.objects.filter(action="usage.resubmit").count() == 1
    again = admin_client.post(url, {"event": {**as_dict(dead.raw), "value": "3.5"}}, format="json")
    assert again.status_code == 409
    listing = admin_client.get("/api/v1/metering/rejected").json()
    assert listing["results"][0]["id"] == dead.pk


def test_rejections_group_into_one_case_per_source_and_code(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    post(writer, [event(f"m{i}", metric="nope") for i in range(5)])
    post(writer, [event("m9", metric="nope"), event("bad-ts", timestamp="x")])
    cases = {
        c.error_code: c.occurrence_count
        for c in ExceptionCase.objects.filter(kind="usage_rejected")
    }
    assert cases == {"unknown_metric": 6, "invalid_timestamp": 1}


def test_nul_characters_are_rejected_and_kept(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    # PostgreSQL stores no NUL in text or jsonb: such events are refused with a code, never a 500.
    resp = post(
        writer,
        [
            event("n1", properties={"note": "a\u0000b"}),
            event("n2\u0000"),
            event("n3", metric="api\u0000calls"),
        ],
    )
    assert resp.status_code == 200
    assert [r["code"] for r in resp.json()["results"]] == [
        "invalid_field",
        "invalid_field",
        "invalid_field",
    ]
    kept = RejectedEvent.objects.order_by("id")
    assert kept.count() == 3 and "\\u0000" in kept[0].raw_text


def test_backslashes_tabs_and_unicode_round_trip(
    writer: KeyedClient, event: Callable[..., dict[str, Any]]
) -> None:
    props = {
        "path": "C:\\new\\N",
        "tab": "a\tb",
        "line": "x\ny",
        "emoji": "ü€😀",
        "nested": {"k": [1, "\\N"]},
    }
    resp = post(writer, [event("id\\with\\backslash", properties=props), event("tab\tid")])
    assert [r.get("code", r["status"]) for r in resp.json()["results"]] == [
        "accepted",
        "invalid_field",
    ]
    stored = UsageEvent.objects.get()
    assert stored.event_id == "id\\with\\backslash" and stored.properties == props
