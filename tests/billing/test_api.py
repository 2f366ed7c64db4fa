"""Billing API: plans and contracts under `admin`, invoices and lineage under `invoices:read`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rest_framework.test import APIClient
import pytest

from billing import services
from billing.models import Contract, Invoice, PricePlan
from core.services import IssuedKey
from exceptions.models import AuditEntry
from metering.models import UsageEvent
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    metric,
    plan,
    send,
)

D = Decimal
pytestmark = pytest.mark.django_db
API = {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}


@pytest.fixture
def billed() -> Invoice:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    acme = customer(us, "acme")
    other = customer(us, "other")
    c = contract(acme, plan("basic", us.base_currency, [API]), date(2026, 10, 1))
    contract(other, PricePlan.objects.get(code="basic"), date(2026, 10, 1))
    send(acme, "api_calls", datetime(2026, 11, 2, tzinfo=UTC), count=5)
    send(other, "api_calls", datetime(2026, 11, 2, tzinfo=UTC), count=1)
    bill(us, "2026-11")
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    return inv


def test_invoice_list_filters_and_needs_the_invoices_scope(
    billed: Invoice, make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key("invoices:read").raw_key)
    body = client.get("/api/v1/invoices", {"customer": "acme"}).json()
    assert [r["number"] for r in body["results"]] == [billed.number]
    assert body["results"][0]["total"] == "0.50"
    assert client.get("/api/v1/invoices", {"status": "draft"}).json()["count"] == 1
    assert (
        client.get("/api/v1/invoices", {"period": "2026-11", "legal_entity": "ll-us"}).json()[
            "count"
        ]
        == 2
    )
    assert client.get("/api/v1/invoices", {"period": "2026-12"}).json()["count"] == 0
    bad = client.get("/api/v1/invoices", {"period": "Nov"})
    assert bad.status_code == 400 and bad.json()["code"] == "billing_invalid_period"
    refused = api_client(make_api_key("admin", name="adm").raw_key).get("/api/v1/invoices")
    assert refused.status_code == 403 and refused.json()["code"] == "scope_missing"


def test_invoice_detail_lineage_and_event_back_to_line(
    billed: Invoice, make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key("invoices:read").raw_key)
    detail = client.get(f"/api/v1/invoices/{billed.pk}").json()
    [line] = detail["lines"]
    assert line["amount"] == "0.50" and line["usage_summary"]["event_count"] == 5
    assert line["usage_summary"]["closed"] is True
    page = client.get(
        f"/api/v1/invoice-lines/{line['id']}/lineage", {"limit": 2, "offset": 0}
    ).json()
    assert page["count"] == 5 and len(page["events"]) == 2 and page["next"]
    seq = page["events"][0]["seq"]
    back = client.get(f"/api/v1/usage-events/{seq}/invoice-lines").json()
    assert back == [
        {
            "line_id": line["id"],
            "position": 1,
            "invoice_id": billed.pk,
            "invoice_number": billed.number,
            "invoice_status": "finalized",
            "usage_summary_id": line["usage_summary"]["id"],
            "summary_revision": 0,
            "currency": "USD",
            "amount": "0.50",
        }
    ]
    other_seq = UsageEvent.objects.exclude(customer=billed.customer).get().seq
    assert (
        client.get(f"/api/v1/usage-events/{other_seq}/invoice-lines").json()[0]["invoice_status"]
        == "draft"
    )
    assert client.get("/api/v1/invoices/999999").status_code == 404
    assert client.get(f"/api/v1/invoices/{billed.pk}/lines").json()["count"] == 1


def test_a_plan_whose_first_version_is_refused_is_not_created(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    entity("ll-us", "USD", 2, "UTC")
    client = api_client(make_api_key("admin").raw_key)
    first_version: dict[str, Any] = {
        "effective_from": "2026-01-01",
        "components": [{**API, "unit_price": "x"}],
    }
    body = {
        "code": "pro",
        "name": "Pro",
        "currency": "USD",
        "first_version": first_version,
    }
    refused = client.post("/api/v1/billing/price-plans", body, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "billing_invalid_plan"
    assert refused.json()["extra"] == {"rating_code": "invalid_decimal", "path": "[0].unit_price"}
    assert not PricePlan.objects.filter(code="pro").exists()
    assert not AuditEntry.objects.filter(action__startswith="price_plan.").exists()
    first_version["components"] = [API]
    assert client.post("/api/v1/billing/price-plans", body, format="json").status_code == 201
    assert list(
        AuditEntry.objects.filter(action__startswith="price_plan.")
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["price_plan.create", "price_plan.version_add"]


def test_plans_and_contracts_through_the_admin_api(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    acme = customer(us, "acme")
    client = api_client(make_api_key("admin").raw_key)
    created = client.post(
        "/api/v1/billing/price-plans",
        {
            "code": "pro",
            "name": "Pro",
            "currency": "USD",
            "first_version": {
                "effective_from": "2026-01-01",
                "components": [API],
                "component_meta": {"api": {"tax_code": "saas"}},
            },
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["versions"][0]["version"] == 1
    floaty = client.post(
        "/api/v1/billing/price-plans/pro/versions",
        {"effective_from": "2026-06-01", "components": [{**API, "unit_price": 0.2}]},
        format="json",
    )
    assert floaty.status_code == 400 and floaty.json()["code"] == "billing_invalid_plan"
    assert floaty.json()["extra"]["rating_code"] == "float_not_allowed"
    early = client.post(
        "/api/v1/billing/price-plans/pro/versions",
        {"effective_from": "2025-06-01", "components": [API]},
        format="json",
    )
    assert early.json()["code"] == "billing_plan_version_order"
    c = client.post(
        "/api/v1/billing/contracts",
        {
            "code": "acme-pro",
            "customer_id": acme.pk,
            "plan": "pro",
            "start_date": "2026-10-01",
            "overrides": {"prices": [{"component": "api", "unit_price": "0.08"}]},
        },
        format="json",
    )
    assert c.status_code == 201, c.json()
    bad = client.post(
        "/api/v1/billing/contracts",
        {
            "code": "acme-x",
            "customer_id": acme.pk,
            "plan": "pro",
            "start_date": "2026-10-01",
            "overrides": {"prices": [{"component": "nope", "unit_price": "0.08"}]},
        },
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["code"] == "billing_invalid_overrides"
    amended = client.post(
        f"/api/v1/billing/contracts/{c.json()['id']}/amendments",
        {"effective_from": "2026-11-15", "overrides": {}, "reason": "list price again"},
        format="json",
    )
    assert amended.status_code == 201, amended.json()
    listed = client.get("/api/v1/billing/contracts", {"customer": "acme"}).json()
    assert listed["results"][0]["amendments"][0]["effective_from"] == "2026-11-15"
    assert (
        AuditEntry.objects.filter(
            action__in=[
                "price_plan.create",
                "price_plan.version_add",
                "contract.create",
                "contract.amend",
            ]
        ).count()
        == 4
    )
    assert Contract.objects.count() == 1


def test_ending_a_contract_prorates_the_last_advance_fee(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    acme = customer(us, "acme")
    c = contract(
        acme,
        plan("fee", us.base_currency, [{"type": "fixed_fee", "code": "f", "amount": "31.00"}]),
        date(2026, 10, 1),
    )
    client = api_client(make_api_key("admin").raw_key)
    ended = client.post(
        f"/api/v1/billing/contracts/{c.pk}/end",
        {"end_date": "2026-12-11", "reason": "churn"},
        format="json",
    )
    assert ended.status_code == 200 and ended.json()["end_date"] == "2026-12-11"
    bill(us, "2026-11")
    # December's fee in advance for 1-10 December: 10/31 x 31.00 = 10.00
    assert [ln.amount for ln in invoice_of(c).lines.all()] == [D("10.00")]
    late = client.post(
        f"/api/v1/billing/contracts/{c.pk}/end",
        {"end_date": "2026-11-20", "reason": "x"},
        format="json",
    )
    assert late.status_code == 400 and late.json()["code"] == "billing_amendment_in_billed_period"
    assert AuditEntry.objects.filter(action="contract.end").count() == 1


def test_the_contract_list_reads_amendments_and_their_plans_in_constant_queries(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    basic = plan("basic", us.base_currency, [API])
    dear = plan("dear", us.base_currency, [{**API, "unit_price": "0.20"}])
    client = api_client(make_api_key("admin").raw_key)

    def listed() -> tuple[int, list[dict[str, Any]]]:
        with CaptureQueriesContext(connection) as q:
            body = client.get("/api/v1/billing/contracts").json()
        return len(q.captured_queries), body["results"]

    c = contract(customer(us, "acme"), basic, date(2026, 10, 1))
    services.contract_amend(
        contract=c, effective_from=date(2026, 12, 1), plan=dear, reason="up", actor=ACTOR
    )
    listed()  # the key's first use also records last_used_at
    one, _ = listed()
    for code in ("b", "c", "d"):
        more = contract(customer(us, code), basic, date(2026, 10, 1))
        services.contract_amend(
            contract=more, effective_from=date(2027, 1, 1), plan=dear, reason="up", actor=ACTOR
        )
        services.contract_amend(
            contract=more, effective_from=date(2026, 12, 1), plan=basic, reason="x", actor=ACTOR
        )
    many, rows = listed()
    assert many == one
    assert [(a["effective_from"], a["plan"]) for a in rows[-1]["amendments"]] == [
        ("2026-12-01", "basic"),
        ("2027-01-01", "dear"),
    ]
