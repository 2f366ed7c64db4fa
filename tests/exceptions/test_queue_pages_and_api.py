"""Queue and case pages through the real middleware, and the API with its idempotency."""

from __future__ import annotations

import csv
import io

import pytest
from django.http import StreamingHttpResponse
from django.test import Client

from core.models import ApiScope
from exceptions.models import AuditEntry, CaseProposal, ExceptionCase

pytestmark = pytest.mark.django_db


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_queue_lists_filters_counts_and_exports(rejected_case, unmapped_case, clerk) -> None:
    c = _login(clerk)
    page = c.get("/exceptions/").content.decode()
    assert f"/exceptions/cases/{rejected_case.pk}/" in page
    assert "Unmapped customer (1)" in page and "Rejected usage event (1)" in page
    only = c.get("/exceptions/?kind=unmapped_customer").content.decode()
    assert f"/exceptions/cases/{unmapped_case.pk}/" in only
    assert f"/exceptions/cases/{rejected_case.pk}/" not in only
    empty = c.get("/exceptions/?view=mine").content.decode()
    assert "Nothing in this view right now" in empty
    export = c.get("/exceptions/?kind=usage_rejected&format=csv")
    assert isinstance(export, StreamingHttpResponse)
    body = export.getvalue()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["id"] for r in rows] == [str(rejected_case.pk)]
    assert rows[0]["error_code"] == "unknown_metric"
    htmx = c.get("/exceptions/?kind=usage_rejected", HTTP_HX_REQUEST="true").content.decode()
    assert "<h1>" not in htmx and f"/exceptions/cases/{rejected_case.pk}/" in htmx


def test_queue_sorts_by_severity_and_filters_by_amount(
    rejected_case, unmapped_case, clerk, usd
) -> None:
    from decimal import Decimal

    ExceptionCase.objects.filter(pk=unmapped_case.pk).update(
        severity="critical", amount_at_stake=Decimal("500"), currency=usd
    )
    c = _login(clerk)
    page = c.get("/exceptions/?sort=-severity").content.decode()
    assert page.index(f"/cases/{unmapped_case.pk}/") < page.index(f"/cases/{rejected_case.pk}/")
    assert "$500.00" in page
    by_amount = c.get("/exceptions/?amount_min=100").content.decode()
    assert f"/cases/{rejected_case.pk}/" not in by_amount


def test_case_page_conflict_message_for_a_stale_form(rejected_case, clerk) -> None:
    c = _login(clerk)
    page = c.get(f"/exceptions/cases/{rejected_case.pk}/").content.decode()
    assert "refused at intake" in page and "unknown_metric" in page
    ok = c.post(
        f"/exceptions/cases/{rejected_case.pk}/assign/",
        {"assignee": "clerk", "version": rejected_case.version},
        follow=True,
    )
    assert "Assigned to clerk" in ok.content.decode()
    stale = c.post(
        f"/exceptions/cases/{rejected_case.pk}/dismiss/",
        {"reason_code": "expected", "comment": "x", "version": rejected_case.version},
        follow=True,
    )
    assert "changed by someone else" in stale.content.decode()
    rejected_case.refresh_from_db()
    assert rejected_case.status == "in_progress"
    timeline = c.get(f"/exceptions/cases/{rejected_case.pk}/?format=csv").content.decode()
    rows = list(csv.DictReader(io.StringIO(timeline)))
    assert [r["action"] for r in rows] == ["case.open", "case.assign"]
    assert rows[1]["actor"] == "clerk" and '"in_progress"' in rows[1]["after"]


def test_auditor_sees_but_cannot_act(rejected_case, auditor) -> None:
    c = _login(auditor)
    assert c.get("/exceptions/").status_code == 200
    r = c.post(
        f"/exceptions/cases/{rejected_case.pk}/dismiss/",
        {"reason_code": "expected", "comment": "x", "version": 1},
        follow=True,
    )
    assert "may not dismiss" in r.content.decode()
    rejected_case.refresh_from_db()
    assert rejected_case.status == "open"


def test_policy_page_edit(approver, clerk) -> None:
    c = _login(approver)
    r = c.post(
        "/exceptions/policies/",
        {
            "kind": "posting_failed",
            "high_amount": "1000",
            "critical_amount": "100000",
            "high_after_hours": "24",
            "critical_after_hours": "120",
            "due_hours": "8",
            "auto_retry": "on",
            "retry_every_minutes": "15",
            "max_auto_retries": "4",
            "four_eyes_above": "500",
        },
        follow=True,
    )
    assert "Policy for posting_failed saved" in r.content.decode()
    assert AuditEntry.objects.filter(action="policy.change").count() == 1
    assert _login(clerk).get("/exceptions/policies/").status_code == 200  # read-only for a clerk


def test_api_lists_with_filters_and_needs_scope(
    rejected_case, unmapped_case, make_api_key, api_client
) -> None:
    reader = api_client(make_api_key(ApiScope.EXCEPTIONS_READ).raw_key)
    r = reader.get("/api/v1/exception-cases?kind=unmapped_customer")
    assert r.status_code == 200
    assert [c["id"] for c in r.json()["results"]] == [unmapped_case.pk]
    assert r.json()["results"][0]["status"] == "open"
    refused = reader.post(f"/api/v1/exception-cases/{rejected_case.pk}/actions/dismiss", {})
    assert refused.status_code == 403


def test_api_action_is_applied_once_per_idempotency_key(
    rejected_case, customer_acme, make_api_key, api_client, approver
) -> None:
    from metering import selectors as ms

    admin = api_client(make_api_key(ApiScope.ADMIN, name="ops").raw_key)
    rejected = ms.rejected_events().get(case_id=rejected_case.pk)
    body = {
        "version": rejected_case.version,
        "rejected_id": rejected.pk,
        "corrected": {"metric": "api_calls"},
        "reason_code": "wrong_metric",
        "comment": "typo",
    }
    url = f"/api/v1/exception-cases/{rejected_case.pk}/actions/correct"
    first = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 200, first.json()
    again = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    assert again.json() == first.json()
    assert CaseProposal.objects.count() == 1
    version = first.json()["case"]["version"]
    self_ok = admin.post(
        f"/api/v1/exception-cases/{rejected_case.pk}/actions/approve",
        {"version": version},
        format="json",
    )
    assert self_ok.status_code == 403 and self_ok.json()["code"] == "self_approval"
    other = api_client(make_api_key(ApiScope.ADMIN, name="ops2").raw_key)
    approved = other.post(
        f"/api/v1/exception-cases/{rejected_case.pk}/actions/approve",
        {"version": version},
        format="json",
        HTTP_IDEMPOTENCY_KEY="a-1",
    )
    assert approved.status_code == 200 and approved.json()["case"]["status"] == "resolved"
    reused = other.post(
        f"/api/v1/exception-cases/{rejected_case.pk}/actions/approve",
        {"version": version + 5},
        format="json",
        HTTP_IDEMPOTENCY_KEY="a-1",
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"


def test_openapi_schema_has_the_case_api(client, clerk) -> None:
    client.force_login(clerk)
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/v1/exception-cases" in schema["paths"]
    assert "/api/v1/exception-cases/{id}/actions/{action}" in schema["paths"]


def test_a_bad_filter_value_is_said_not_crashed(rejected_case, clerk) -> None:
    r = _login(clerk).get("/exceptions/?amount_min=lots&kind=nonsense")
    assert r.status_code == 200
    body = r.content.decode()
    assert "Enter a number" in body and "Select a valid choice" in body


def test_an_idempotency_key_whose_process_died_is_taken_over_once_its_lease_expires(
    rejected_case, customer_acme, make_api_key, api_client
) -> None:
    import hashlib
    import json
    from datetime import timedelta

    from django.utils import timezone

    from exceptions.models import IdempotentRequest

    key = make_api_key(ApiScope.ADMIN, name="ops")
    admin = api_client(key.raw_key)
    body = {"version": rejected_case.version, "body": "looked at it"}
    url = f"/api/v1/exception-cases/{rejected_case.pk}/actions/comment"
    digest = hashlib.sha256(
        json.dumps([rejected_case.pk, "comment", body], sort_keys=True, default=str).encode()
    ).hexdigest()
    # the first request's process died after claiming the key, before answering
    now = timezone.now()
    record = IdempotentRequest.objects.create(
        api_key=key.api_key,
        key="k-died",
        request_hash=digest,
        status_code=0,
        response={},
        created_at=now,
        lease_expires_at=now + timedelta(seconds=60),
    )
    running = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-died")
    assert running.status_code == 409 and "still running" in running.json()["message"]
    assert running.json()["extra"]["retry_after_seconds"] > 0
    assert not rejected_case.comments.exists()

    IdempotentRequest.objects.filter(pk=record.pk).update(
        lease_expires_at=now - timedelta(seconds=1)
    )
    retried = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-died")
    assert retried.status_code == 200, retried.json()
    assert rejected_case.comments.count() == 1
    record.refresh_from_db()
    assert (record.status_code, record.lease_expires_at) == (200, None)
    again = admin.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-died")
    assert again.headers["Idempotent-Replay"] == "true" and rejected_case.comments.count() == 1


def test_the_queue_names_kinds_in_words_and_the_timeline_shows_changed_fields(
    rejected_case, clerk
) -> None:
    c = _login(clerk)
    page = c.get("/exceptions/?kind=usage_rejected").content.decode()
    assert '<td title="usage_rejected">Rejected usage event</td>' in page
    case = c.get(f"/exceptions/cases/{rejected_case.pk}/").content.decode()
    timeline = case[case.index("Audit timeline") :]
    # case.open: nothing before, the case's fields after, one line a field, no raw dicts
    assert "kind: — → usage_rejected" in timeline
    assert "before None" not in timeline and "{'" not in timeline


def test_an_age_past_a_century_is_a_400_not_a_500(make_api_key, api_client, clerk) -> None:
    reader = api_client(make_api_key(ApiScope.EXCEPTIONS_READ).raw_key)
    for query in ("age_min=-7.0969808747803144e%2B16", "age_max=1e12", "age_min=-1"):
        resp = reader.get(f"/api/v1/exception-cases?{query}")
        assert resp.status_code == 400, (query, resp.status_code, resp.content[:200])
    page = _login(clerk).get("/exceptions/?age_min=1e12")
    assert page.status_code == 200 and "less than or equal to 36500" in page.content.decode()
