"""API keys: hashed at rest, Bearer auth, scopes, revocation, throttling."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.api.throttling import ApiKeyRateThrottle
from core.models import ApiKey
from core.services import api_key_revoke
from exceptions.models import AuditEntry
from core.actors import Actor


@pytest.mark.django_db
def test_create_api_key_command_prints_the_key_once_and_stores_only_its_hash() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "create_api_key",
        "--name",
        "product",
        "--scopes",
        "usage:write,postings:read",
        stdout=out,
        stderr=err,
    )
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="product")
    assert raw.startswith(f"ll_{key.prefix}_")
    assert key.scopes == ["postings:read", "usage:write"]
    assert raw not in key.key_hash and len(key.key_hash) == 64
    assert "shown only this once" in err.getvalue()
    assert AuditEntry.objects.filter(action="api_key.create", object_id=str(key.pk)).count() == 1


@pytest.mark.django_db
def test_create_api_key_refuses_unknown_scopes() -> None:
    with pytest.raises(CommandError, match="Unknown scope.*usage:wrte"):
        call_command("create_api_key", "--name", "x", "--scopes", "usage:wrte")
    assert not ApiKey.objects.exists()


def test_a_valid_key_authenticates(make_api_key, api_client) -> None:
    issued = make_api_key("invoices:read")
    response = api_client(issued.raw_key).get("/api/v1/me")
    assert response.status_code == 200
    assert response.json() == {
        "name": "test-key",
        "prefix": issued.api_key.prefix,
        "scopes": ["invoices:read"],
    }


@pytest.mark.django_db
@pytest.mark.parametrize("header", ["Bearer ll_nope_nope", "Bearer garbage", "Bearer a b"])
def test_a_bad_key_gets_401_with_a_code(client, header) -> None:
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["code"] == "auth_invalid"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_no_key_gets_401(client) -> None:
    response = client.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["code"] == "auth_missing"


def test_a_revoked_key_gets_401(make_api_key, api_client) -> None:
    issued = make_api_key("admin")
    api_key_revoke(api_key=issued.api_key, actor=Actor.system("tests"), reason="leaked")
    response = api_client(issued.raw_key).get("/api/v1/customers")
    assert response.status_code == 401
    assert response.json()["code"] == "auth_revoked"
    assert AuditEntry.objects.filter(action="api_key.revoke").count() == 1


def test_a_key_with_the_right_scope_can_use_a_valid_key_that_was_tampered_cannot(
    make_api_key, api_client
) -> None:
    issued = make_api_key("admin")
    assert api_client(issued.raw_key).get("/api/v1/customers").status_code == 200
    tampered = issued.raw_key[:-2] + ("AA" if not issued.raw_key.endswith("AA") else "BB")
    assert api_client(tampered).get("/api/v1/customers").status_code == 401


def test_a_key_without_admin_gets_403_on_admin_endpoints(make_api_key, api_client) -> None:
    issued = make_api_key("usage:write", "invoices:read", "postings:read", "exceptions:read")
    for url in ("/api/v1/customers", "/api/v1/legal-entities"):
        response = api_client(issued.raw_key).get(url)
        assert response.status_code == 403, url
        body = response.json()
        assert body["code"] == "scope_missing"
        assert "'admin'" in body["message"]


def test_admin_key_creates_a_customer_with_an_audit_entry(
    make_api_key, api_client, entity_us
) -> None:
    issued = make_api_key("admin")
    response = api_client(issued.raw_key).post(
        "/api/v1/customers",
        {"legal_entity": "ll-us", "code": "hooli", "name": "Hooli"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    entry = AuditEntry.objects.get(action="customer.create")
    assert entry.actor_kind == "api_key" and entry.actor_api_key_id == issued.api_key.pk


def test_invalid_customer_input_gets_field_errors(make_api_key, api_client, entity_us) -> None:
    issued = make_api_key("admin")
    response = api_client(issued.raw_key).post(
        "/api/v1/customers", {"legal_entity": "nope"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_failed"
    assert set(body["extra"]["fields"]) == {"legal_entity", "code", "name"}


@pytest.mark.taskqueue  # CI runs it again on Redis, the cache web processes share
def test_each_key_is_throttled_on_its_own(make_api_key, api_client, monkeypatch) -> None:
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: 999_980.0)  # 20 s into a minute
    first, second = make_api_key("admin", name="a"), make_api_key("admin", name="b")
    client = api_client(first.raw_key)
    assert [client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/api/v1/me")
    assert limited.status_code == 429
    assert limited.json()["code"] == "throttled"
    assert limited.json()["extra"]["retry_after_seconds"] == 40  # the rest of the minute
    assert api_client(second.raw_key).get("/api/v1/me").status_code == 200


@pytest.mark.taskqueue
def test_the_window_slides(make_api_key, api_client, monkeypatch) -> None:
    """The last minute's requests count in proportion to how much of that minute is still
    inside the sliding span: 6 at the end of one minute block the next minute's first half."""
    from django.core.cache import cache

    cache.clear()
    clock = {"now": 999_990.0}  # 30 s into a minute (999,960 = 16,666 minutes)
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "6/min"})
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: clock["now"])
    client = api_client(make_api_key("admin").raw_key)
    assert {client.get("/api/v1/me").status_code for _ in range(6)} == {200}
    clock["now"] = 1_000_050.0  # 30 s into the next minute: 6 x 1/2 = 3 still count
    assert [client.get("/api/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]
    clock["now"] = 1_000_059.0  # 39 s in: 6 x 21/60 = 2.1, plus the 3 sent = 5.1 < 6
    assert client.get("/api/v1/me").status_code == 200
    limited = client.get("/api/v1/me")  # 2.1 + 4 = 6.1
    assert limited.status_code == 429
    # room again once the last minute's share is below 2: at 1 - 1/6 of the window, 11 s on
    assert limited.json()["extra"]["retry_after_seconds"] == 11


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(client, clerk) -> None:
    client.force_login(clerk)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/customers" in schema.json()["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn" not in docs.content.lower()


def test_integration_admin_revokes_a_key_in_the_admin(
    client, integrator, make_api_key, api_client
) -> None:
    issued = make_api_key("usage:write")
    client.force_login(integrator)
    response = client.post(
        "/admin/core/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]}
    )
    assert response.status_code == 302
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None
    entry = AuditEntry.objects.get(action="api_key.revoke")
    assert entry.actor_label == "integrator" and entry.reason == "revoked in admin"
    assert api_client(issued.raw_key).get("/api/v1/me").status_code == 401


def test_auditor_cannot_revoke_a_key(client, auditor, make_api_key) -> None:
    issued = make_api_key("usage:write")
    client.force_login(auditor)
    client.post(
        "/admin/core/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.pk]}
    )
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None


@pytest.mark.taskqueue
def test_invalid_keys_are_throttled_per_address(
    make_api_key, api_client, settings, monkeypatch
) -> None:
    """After API_INVALID_KEY_RATE failures an address gets 429 before any key is looked up,
    a valid one included; another address is not affected, and valid requests do not count."""
    from django.core.cache import cache

    from core.api.auth import InvalidKeyThrottle

    cache.clear()
    settings.API_INVALID_KEY_RATE = "3/min"
    clock = {"now": 2_000_000.0}
    monkeypatch.setattr(InvalidKeyThrottle, "timer", lambda self: clock["now"])
    valid = make_api_key("admin").raw_key
    wrong = "ll_000000000000_not-a-key"

    def get(key: str, ip: str = "203.0.113.9") -> int:
        return api_client(key).get("/api/v1/me", REMOTE_ADDR=ip).status_code

    assert [get(valid) for _ in range(5)] == [200] * 5  # valid requests are not counted
    assert [get(wrong) for _ in range(3)] == [401, 401, 401]
    limited = api_client(wrong).get("/api/v1/me", REMOTE_ADDR="203.0.113.9")
    assert limited.status_code == 429
    assert limited.json()["code"] == "throttled"
    assert limited.json()["extra"]["retry_after_seconds"] == 60
    assert get(valid) == 429  # no key is looked up for this address now
    assert get(wrong, ip="198.51.100.1") == 401
    assert get(valid, ip="198.51.100.1") == 200
    clock["now"] += 61  # the failures leave the window
    assert get(valid) == 200
    assert get(wrong) == 401
