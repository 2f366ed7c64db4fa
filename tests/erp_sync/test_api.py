"""Posting-status API (`postings:read`) and the ERP admin API (`admin`)."""

from __future__ import annotations

import datetime

from datetime import date

import pytest

from erp_sync.models import ErpConnection, Posting
from erp_sync.services import ledger_consume, outbox_drain
from exceptions.models import AuditEntry
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import erp_fixture  # noqa: F401 - the `erp` fixture
from tests.erp_sync.world import billed_world, memory_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def postings_world(erp):
    world = billed_world(5)
    conn = memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    erp.closed_before = date(2027, 1, 1)
    outbox_drain(max_postings=2)  # two fail on the closed period
    erp.closed_before = None
    outbox_drain()
    return world, conn


def test_posting_list_filters_and_pages_with_a_stable_cursor(
    postings_world, make_api_key, api_client
) -> None:
    world, conn = postings_world
    client = api_client(make_api_key("postings:read").raw_key)
    first = client.get("/api/v1/postings", {"limit": 2})
    assert first.status_code == 200, first.content
    seen = [p["id"] for p in first.json()["results"]]
    nxt = first.json()["next"]
    while nxt:
        page = client.get(nxt)
        seen += [p["id"] for p in page.json()["results"]]
        nxt = page.json()["next"]
    assert (
        sorted(seen) == sorted(Posting.objects.values_list("pk", flat=True)) and len(set(seen)) == 5
    )
    failed = client.get("/api/v1/postings", {"status": "failed"}).json()["results"]
    assert len(failed) == 2 and {p["last_error"] for p in failed} == {
        'The period of "2026-12-03" is closed.'
    }
    one = client.get(
        "/api/v1/postings",
        {
            "customer": "cust4",
            "legal_entity": "ll-us",
            "connection": conn.pk,
            "document_type": "invoice",
        },
    ).json()["results"]
    assert [p["customer"] for p in one] == ["cust4"] and one[0]["status"] == "posted"
    later = Posting.objects.order_by("-updated_at").first()
    assert later is not None
    since = client.get("/api/v1/postings", {"updated_since": later.updated_at.isoformat()}).json()[
        "results"
    ]
    assert later.pk in [p["id"] for p in since]
    # an offset PostgreSQL would refuse (it takes up to 15:59) is compared in UTC: the same moment
    far = later.updated_at.astimezone(datetime.timezone(datetime.timedelta(hours=22, minutes=10)))
    same = client.get("/api/v1/postings", {"updated_since": far.isoformat()})
    assert same.status_code == 200 and later.pk in [p["id"] for p in same.json()["results"]]
    # schemathesis found this one: year 1 at +22:10 is before year 1 in UTC
    edge = client.get("/api/v1/postings", {"updated_since": "0001-01-01T01:00:00+22:10"})
    assert edge.status_code == 400 and edge.json()["extra"]["field"] == "updated_since"
    bad = client.get("/api/v1/postings", {"status": "nope"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_parameter"
    assert "posted" in bad.json()["message"] and "posted" in bad.json()["extra"]["allowed"]


def test_posting_detail_has_every_attempt(postings_world, make_api_key, api_client) -> None:
    posting = Posting.objects.filter(status="failed").first()
    assert posting is not None
    client = api_client(make_api_key("postings:read").raw_key)
    body = client.get(f"/api/v1/postings/{posting.pk}").json()
    assert body["external_id"] == posting.external_id and body["amount"] == "221.1000"
    (attempt,) = body["attempts_detail"]
    assert attempt["outcome"] == "permanent" and attempt["exchanges"]
    assert client.get("/api/v1/postings/999999").status_code == 404


def test_posting_api_needs_its_scope(postings_world, make_api_key, api_client) -> None:
    client = api_client(make_api_key("invoices:read").raw_key)
    assert client.get("/api/v1/postings").json()["code"] == "scope_missing"


def test_replay_through_the_admin_api_is_audited(postings_world, make_api_key, api_client) -> None:
    posting = Posting.objects.filter(status="failed").first()
    assert posting is not None
    client = api_client(make_api_key("admin").raw_key)
    assert (
        client.post(f"/api/v1/postings/{posting.pk}/replay", {}, format="json").status_code == 400
    )
    response = client.post(
        f"/api/v1/postings/{posting.pk}/replay", {"reason": "period reopened"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "pending"
    assert (
        AuditEntry.objects.filter(action="posting.replay", object_id=str(posting.pk)).count() == 1
    )
    again = client.post(f"/api/v1/postings/{posting.pk}/replay", {"reason": "again"}, format="json")
    assert again.status_code == 400 and again.json()["code"] == "erp_posting_not_replayable"


def test_admin_api_creates_connections_without_ever_showing_a_password(
    entity_us, make_api_key, api_client, monkeypatch
) -> None:
    client = api_client(make_api_key("admin").raw_key)
    monkeypatch.setenv("ERP_US_PASSWORD", "hunter2-secret")
    created = client.post(
        "/api/v1/erp/connections",
        {
            "legal_entity": "ll-us",
            "name": "tryton-us",
            "kind": "tryton",
            "base_url": "http://127.0.0.1:8010",
            "database": "ledgerline",
            "login": "ledgerline",
            "password_env": "ERP_US_PASSWORD",
            "max_attempts": 5,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["password_env"] == "ERP_US_PASSWORD" and body["password_set"] is True
    assert "hunter2-secret" not in created.content.decode()
    assert "hunter2-secret" not in str(list(AuditEntry.objects.values_list("after", flat=True)))
    pk = body["id"]
    refused = client.patch(
        f"/api/v1/erp/connections/{pk}", {"password_env": "hunter2 secret"}, format="json"
    )
    assert refused.status_code == 400 and refused.json()["code"] == "erp_invalid_connection"
    mapped = client.post(
        f"/api/v1/erp/connections/{pk}/account-mappings",
        {"role": "revenue", "key": "api_calls", "account": "4.2.2"},
        format="json",
    )
    assert mapped.status_code == 200
    assert client.get(f"/api/v1/erp/connections/{pk}").json()["account_mappings"] == [
        {"role": "revenue", "key": "api_calls", "account": "4.2.2"}
    ]
    assert (
        client.patch(f"/api/v1/erp/connections/{pk}", {"enabled": False}, format="json").json()[
            "enabled"
        ]
        is False
    )
    assert ErpConnection.objects.get(pk=pk).enabled is False
    assert AuditEntry.objects.filter(action="erp_connection.update").count() == 1


def test_openapi_schema_documents_the_posting_api(client, clerk) -> None:
    client.force_login(clerk)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert {"/api/v1/postings", "/api/v1/postings/{id}", "/api/v1/erp/connections"} <= set(paths)
    params = {p["name"] for p in paths["/api/v1/postings"]["get"]["parameters"]}
    assert {
        "status",
        "connection",
        "document_type",
        "customer",
        "legal_entity",
        "updated_since",
        "cursor",
    } <= params
