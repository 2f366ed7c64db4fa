"""Price plans and contracts edited in forms (issue 15, item 7): billing/views_plans.py.

A plan built row by row in the editor is the plan the API builds from the same terms; the
rating config's errors come back next to the field they name; the preview prices typed usage
through the rating engine, to the cent; only integration admins edit, and every save is
audited by the service it goes through.

The preview's hand-computed figures (USD, half-up at the line):
  api      per_unit 0.0125 x 1,234.5 calls         = 15.43125 -> 15.43
  storage  graduated: 100 x 0.10 = 10.00; 1,400 x 0.05 = 70.00, + flat 5.00 = 85.00
  platform fixed fee                                = 99.00
  subtotal                                          = 199.43
In JPY (0 minor units) the same usage with unit price 3 per call and the same tiers in yen
(100 x 10 + 1,400 x 5 + 500 = 8,500) and platform 9,900: 3 x 1,234.5 = 3,703.5 -> 3,704;
subtotal 3,704 + 8,500 + 9,900 = 22,104.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from billing import services
from core.services import IssuedKey
from billing.models import (
    Contract,
    ContractAmendment,
    EntityBillingSettings,
    PricePlan,
    Rounding,
)
from core.models import ApiScope, Currency, Customer
from exceptions.models import AuditEntry
from tests.billing.conftest import ACTOR, currency, plan

pytestmark = pytest.mark.django_db

TIERED: list[dict[str, Any]] = [
    {
        "type": "per_unit",
        "code": "api",
        "metric": "api_calls",
        "unit_price": "0.0125",
        "description": "API calls",
    },
    {
        "type": "graduated",
        "code": "storage",
        "metric": "storage_gb",
        "tiers": [
            {"up_to": "100", "unit_price": "0.10"},
            {"up_to": None, "unit_price": "0.05", "flat_fee": "5"},
        ],
    },
    {"type": "fixed_fee", "code": "platform", "amount": "99.00", "prorate": False},
]


def _rows(prefix: str, items: list[dict[str, Any]]) -> dict[str, str]:
    """The POST of a formset of rows (and their tier formsets), as the editor page sends it."""
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(items)),
        f"{prefix}-INITIAL_FORMS": str(len(items)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, item in enumerate(items):
        item = dict(item)
        tiers = item.pop("tiers", [])
        order = item.pop("ORDER", i + 1)
        for name, value in item.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            data[f"{prefix}-{i}-{name}"] = "" if value is None else str(value)
        data[f"{prefix}-{i}-ORDER"] = str(order)
        tp = f"{prefix}-{i}-tiers"
        data.update(_rows(tp, tiers) if tiers else {f"{tp}-TOTAL_FORMS": "0"})
        if not tiers:
            data.update({f"{tp}-INITIAL_FORMS": "0"})
    return data


def _usage(figures: list[tuple[str, str, str]]) -> dict[str, str]:
    data = {"usage-TOTAL_FORMS": str(len(figures)), "usage-INITIAL_FORMS": "0"}
    for i, (metric, quantity, amounts) in enumerate(figures):
        data |= {
            f"usage-{i}-metric": metric,
            f"usage-{i}-quantity": quantity,
            f"usage-{i}-event_amounts": amounts,
        }
    return data


def _plan_post(components: list[dict[str, Any]], **extra: str) -> dict[str, str]:
    return {
        "code": "storage-2027",
        "name": "Storage 2027",
        "currency": "USD",
        "default_tax_code": "saas",
        "effective_from": "2026-01-01",
        "note": "from the editor",
        "idempotency_key": uuid.uuid4().hex,  # the page's one-time token
        **_rows("components", components),
        **extra,
    }


@pytest.fixture
def usd() -> Currency:
    return currency("USD", 2)


@pytest.fixture
def admin_client(client: Client, integrator: User) -> Client:
    client.force_login(integrator)
    return client


def test_a_plan_built_in_the_form_equals_the_plan_the_api_builds(
    admin_client: Client,
    usd: Currency,
    make_api_key: Callable[..., IssuedKey],
    api_client: Callable[[str], APIClient],
) -> None:
    response = admin_client.post("/billing/plans/new/", _plan_post(TIERED, save="1"))
    assert response.status_code == 302, response.content.decode()[:3000]
    api = api_client(make_api_key(ApiScope.ADMIN).raw_key)
    body = {
        "code": "storage-api",
        "name": "Storage 2027",
        "currency": "USD",
        "default_tax_code": "saas",
        "first_version": {"effective_from": "2026-01-01", "components": TIERED, "note": "x"},
    }
    assert api.post("/api/v1/billing/price-plans", body, format="json").status_code == 201
    from_form = PricePlan.objects.get(code="storage-2027").versions.get()
    from_api = PricePlan.objects.get(code="storage-api").versions.get()
    assert from_form.components == from_api.components
    assert from_form.effective_from == date(2026, 1, 1) and from_form.note == "from the editor"
    entries = AuditEntry.objects.filter(
        object_type="billing.priceplan", object_id=str(from_form.plan_id)
    ).order_by("seq")
    assert [(e.action, e.actor_label) for e in entries] == [
        ("price_plan.create", "integrator"),
        ("price_plan.version_add", "integrator"),
    ]


def test_rows_are_reordered_and_removed_and_meta_kept(admin_client: Client, usd: Currency) -> None:
    rows = [
        {**TIERED[0], "ORDER": 3, "tax_code": "api-tax"},
        {**TIERED[1], "ORDER": 1},
        {**TIERED[2], "ORDER": 2},
        {"type": "per_unit", "code": "gone", "metric": "m", "unit_price": "1", "DELETE": "on"},
    ]
    assert admin_client.post("/billing/plans/new/", _plan_post(rows, save="1")).status_code == 302
    version = PricePlan.objects.get(code="storage-2027").versions.get()
    assert [c["code"] for c in version.components] == ["storage", "platform", "api"]
    assert version.component_meta == {"api": {"tax_code": "api-tax"}}


def test_add_component_and_add_tier_rerender_without_saving(
    admin_client: Client, usd: Currency
) -> None:
    page = admin_client.post("/billing/plans/new/", _plan_post(TIERED[1:2], add_tier="0"))
    html = page.content.decode()
    assert 'name="components-0-tiers-2-up_to"' in html  # a third tier row
    page = admin_client.post("/billing/plans/new/", _plan_post(TIERED[1:2], add_component="1"))
    assert 'name="components-1-type"' in page.content.decode()
    assert not PricePlan.objects.exists()


def test_validation_errors_are_shown_next_to_the_field_and_nothing_is_saved(
    admin_client: Client, usd: Currency
) -> None:
    bad = [
        {**TIERED[0], "unit_price": "0.1234567"},  # seven places
        {
            **TIERED[1],
            "tiers": [
                {"up_to": "100", "unit_price": "0.10"},
                {"up_to": "50", "unit_price": "0.08"},  # must rise
                {"up_to": None, "unit_price": "0.05"},
            ],
        },
        {"type": "fixed_fee", "code": "platform"},  # no amount
        {"type": "volume", "code": "seats", "metric": "seats", "tiers": [{"unit_price": "abc"}]},
    ]
    html = admin_client.post("/billing/plans/new/", _plan_post(bad, save="1")).content.decode()

    def error_of(name: str) -> str:
        marker = f'id="{name}-error"'
        assert marker in html, (name, html[:5000])
        start = html.index(marker)
        return unescape(html[html.index(">", start) + 1 : html.index("</span>", start)])

    assert "more than 6 decimal places" in error_of("components-0-unit_price")
    assert "must be greater than the previous tier" in error_of("components-1-tiers-1-up_to")
    assert "'amount' is required" in error_of("components-2-amount")
    assert "'abc' is not a decimal number" in error_of("components-3-tiers-0-unit_price")
    assert 'value="0.1234567"' in html  # what was typed stays in the form
    assert not PricePlan.objects.exists()


def test_service_refusals_land_on_their_field(admin_client: Client, usd: Currency) -> None:
    duplicate = [TIERED[0], {**TIERED[2], "code": "api"}]
    html = admin_client.post("/billing/plans/new/", _plan_post(duplicate, save="1")).content
    assert b'id="components-1-code-error"' in html and b"appears twice" in html
    plan("storage-2027", Currency.objects.get(code="USD"), TIERED, effective_from=date(2026, 3, 1))
    page = admin_client.post(
        "/billing/plans/storage-2027/versions/new/",
        {
            "effective_from": "2026-02-01",
            "note": "",
            **_rows("components", TIERED),
            "save": "1",
            "idempotency_key": uuid.uuid4().hex,
        },
    ).content.decode()
    start = page.index('id="effective_from-error"')  # next to the date field
    assert "A new version must start after 2026-03-01" in page[start : start + 200]


def test_new_version_starts_from_the_latest_and_is_added(
    admin_client: Client, usd: Currency
) -> None:
    p = plan("storage-2027", usd, TIERED)
    page = admin_client.get(f"/billing/plans/{p.code}/versions/new/").content.decode()
    assert 'value="0.0125"' in page and 'name="components-1-tiers-1-flat_fee"' in page
    changed = [{**TIERED[0], "unit_price": "0.01"}, *TIERED[1:]]
    post = {"effective_from": "2026-06-01", "note": "cheaper", **_rows("components", changed)}
    post["idempotency_key"] = uuid.uuid4().hex
    assert admin_client.post(f"/billing/plans/{p.code}/versions/new/", post | {"save": "1"})
    latest = p.versions.order_by("-version").first()
    assert latest is not None and latest.version == 2
    assert latest.components[0]["unit_price"] == "0.01"


@pytest.mark.parametrize(
    ("code", "minor", "components", "expected"),
    [
        ("USD", 2, TIERED, ["$15.43", "$85.00", "$99.00", "$199.43"]),
        (
            "JPY",
            0,
            [
                {**TIERED[0], "unit_price": "3"},
                {
                    **TIERED[1],
                    "tiers": [
                        {"up_to": "100", "unit_price": "10"},
                        {"up_to": None, "unit_price": "5", "flat_fee": "500"},
                    ],
                },
                {**TIERED[2], "amount": "9900"},
            ],
            ["¥3,704", "¥8,500", "¥9,900", "¥22,104"],
        ),
    ],
)
def test_preview_prices_typed_usage_to_the_cent(
    admin_client: Client,
    code: str,
    minor: int,
    components: list[dict[str, Any]],
    expected: list[str],
) -> None:
    currency(code, minor)
    post = _plan_post(components, currency=code, preview="1")
    post |= _usage([("api_calls", "1234.5", ""), ("storage_gb", "1500", "")])
    html = admin_client.post("/billing/plans/new/", post).content.decode()
    result = html[html.index('aria-label="Preview result"') :]
    for amount in expected:
        assert f'<td class="num">{amount}</td>' in result or f">{amount}</th>" in result, amount
    assert f'id="preview-subtotal">{expected[-1]}</th>' in result
    assert not PricePlan.objects.exists()


def test_preview_reports_bad_usage_next_to_its_field(admin_client: Client, usd: Currency) -> None:
    post = _plan_post(TIERED, preview="1") | _usage([("api_calls", "-3", "")])
    html = admin_client.post("/billing/plans/new/", post).content.decode()
    assert 'id="usage-0-quantity-error"' in html
    assert 'aria-label="Preview result"' not in html


@pytest.mark.parametrize("role", ["clerk", "approver", "auditor"])
def test_only_integration_admins_edit(
    client: Client, role: str, request: pytest.FixtureRequest, usd: Currency
) -> None:
    client.force_login(request.getfixturevalue(role))
    p = plan("p1", usd, TIERED)
    for url in (
        "/billing/plans/new/",
        f"/billing/plans/{p.code}/versions/new/",
        "/billing/contracts/new/",
    ):
        assert client.get(url).status_code == 403
        assert client.post(url, _plan_post(TIERED, save="1")).status_code == 403
    assert PricePlan.objects.count() == 1
    lists = client.get("/billing/plans/")
    assert lists.status_code == (200 if role == "auditor" else 403)
    if role == "auditor":
        assert b"New version" not in lists.content and b"New price plan" not in lists.content


def test_anonymous_is_sent_to_the_login(client: Client) -> None:
    response = client.get("/billing/plans/new/")
    assert response.status_code == 302 and "/login" in response["Location"]


# --------------------------------------------------------------------------- contracts


@pytest.fixture
def acme(customer_acme: Customer) -> Customer:
    return customer_acme


OVERRIDES: dict[str, list[dict[str, Any]]] = {
    "prices": [
        {"component": "api", "unit_price": "0.01"},
        {
            "component": "storage",
            "tiers": [
                {"up_to": "200", "unit_price": "0.08"},
                {"up_to": None, "unit_price": "0.04"},
            ],
        },
    ],
    "discounts": [{"percent_off": "10", "description": "launch"}],
    "caps": [{"component": "api", "max_amount": "500"}],
}


def _contract_post(acme: Customer, p: PricePlan, overrides: dict[str, Any]) -> dict[str, str]:
    data = {
        "code": "acme-2027",
        "customer": str(acme.pk),
        "plan": str(p.pk),
        "start_date": "2026-01-01",
        "end_date": "",
        "cadence": "monthly",
        "anchor_day": "1",
        "anchor_month": "1",
        "prepaid_balance": "0",
        "idempotency_key": uuid.uuid4().hex,  # the page's one-time token
    }
    for name in ("prices", "discounts", "caps"):
        data |= _rows(name, overrides.get(name, []))
    return data


def test_a_contract_built_in_the_form_equals_the_one_the_api_builds(
    admin_client: Client,
    acme: Customer,
    usd: Currency,
    make_api_key: Callable[..., IssuedKey],
    api_client: Callable[[str], APIClient],
) -> None:
    p = plan("storage-2027", usd, TIERED)
    post = _contract_post(acme, p, OVERRIDES) | {"save": "1"}
    response = admin_client.post("/billing/contracts/new/", post)
    assert response.status_code == 302, response.content.decode()[:3000]
    api = api_client(make_api_key(ApiScope.ADMIN).raw_key)
    body = {
        "code": "acme-api",
        "customer_id": acme.pk,
        "plan": p.code,
        "start_date": "2026-01-01",
        "overrides": OVERRIDES,
    }
    assert api.post("/api/v1/billing/contracts", body, format="json").status_code == 201
    from_form = Contract.objects.get(code="acme-2027")
    assert from_form.overrides == Contract.objects.get(code="acme-api").overrides
    entry = AuditEntry.objects.get(action="contract.create", object_id=str(from_form.pk))
    assert entry.actor_label == "integrator"


def test_an_override_that_does_not_fit_is_shown_on_its_row(
    admin_client: Client, acme: Customer, usd: Currency
) -> None:
    p = plan("storage-2027", usd, TIERED)
    wrong = {"prices": [{"component": "api", "rate": "0.02"}]}  # per_unit takes unit_price
    html = admin_client.post(
        "/billing/contracts/new/", _contract_post(acme, p, wrong) | {"save": "1"}
    ).content.decode()
    assert 'id="prices-0-component-error"' in html and "override it with unit_price" in html
    two = {"discounts": [{"percent_off": "10", "amount_off": "5"}]}
    html = admin_client.post(
        "/billing/contracts/new/", _contract_post(acme, p, two) | {"save": "1"}
    ).content.decode()
    assert (
        'id="discounts-0-error"' in html and "set exactly one of percent_off or amount_off" in html
    )
    assert not Contract.objects.exists()


def test_amendment_form_changes_overrides_from_a_date_with_a_reason(
    admin_client: Client, acme: Customer, usd: Currency
) -> None:
    p = plan("storage-2027", usd, TIERED)
    c = services.contract_create(
        code="acme-1", customer=acme, plan=p, start_date=date(2026, 1, 1), actor=ACTOR
    )
    page = admin_client.get(f"/billing/contracts/{c.pk}/amend/")
    assert page.status_code == 200
    base = {"effective_from": "2026-04-01", "plan": "", **_contract_post(acme, p, OVERRIDES)}
    missing = admin_client.post(f"/billing/contracts/{c.pk}/amend/", base | {"save": "1"})
    assert b'id="reason-error"' in missing.content
    ok = base | {"save": "1", "reason": "renegotiated", "change_overrides": "on"}
    assert admin_client.post(f"/billing/contracts/{c.pk}/amend/", ok).status_code == 302
    amendment = ContractAmendment.objects.get(contract=c)
    assert amendment.effective_from == date(2026, 4, 1)
    assert amendment.overrides is not None
    assert amendment.overrides["discounts"] == [{"percent_off": "10", "description": "launch"}]
    entry = AuditEntry.objects.get(action="contract.amend", object_id=str(c.pk))
    assert entry.reason == "renegotiated" and entry.actor_label == "integrator"


@pytest.mark.parametrize(
    ("rounding", "api", "discount"),
    [("ROUND_HALF_UP", "$12.35", "($17.94)"), ("ROUND_HALF_EVEN", "$12.34", "($17.93)")],
)
def test_contract_preview_prices_usage_with_the_overrides_typed(
    admin_client: Client, acme: Customer, usd: Currency, rounding: str, api: str, discount: str
) -> None:
    """api 1,234.5 x 0.01 = 12.345 -> 12.35; storage on the override's tiers 200 x 0.08 +
    1,300 x 0.04 = 68.00; platform 99.00; running total 179.35, 10 % off = 17.935 -> (17.94);
    subtotal 161.41. Rounded as acme's entity bills, half even: 12.345 -> 12.34; 179.34,
    10 % off = 17.934 -> (17.93); subtotal 161.41."""
    EntityBillingSettings.objects.create(legal_entity=acme.legal_entity, rounding=rounding)
    p = plan("storage-2027", usd, TIERED)
    post = _contract_post(acme, p, OVERRIDES) | {"preview": "1"}
    post |= _usage([("api_calls", "1234.5", ""), ("storage_gb", "1500", "")])
    html = admin_client.post("/billing/contracts/new/", post).content.decode()
    result = html[html.index('aria-label="Preview result"') :]
    for amount in (api, "$68.00", "$99.00", discount):
        assert f'<td class="num">{amount}</td>' in result, amount
    assert 'id="preview-subtotal">$161.41</th>' in result
    label = Rounding(rounding).label
    assert f"Rounded as {acme.legal_entity.code} bills: {label}." in unescape(html)
    assert not Contract.objects.exists()


def test_a_position_that_is_not_a_number_loses_no_row(admin_client: Client, usd: Currency) -> None:
    post = _plan_post(TIERED) | {"components-1-ORDER": "x"}
    html = admin_client.post("/billing/plans/new/", post).content.decode()
    for code in ("api", "storage", "platform"):
        assert f'value="{code}"' in html, code


def test_every_component_type_reopened_in_the_editor_gives_back_the_same_json() -> None:
    """A new version starts from the latest one's rows: unchanged, they are the same JSON."""
    from billing.forms import ComponentForm, RowList, rows_from_json
    from billing.rating import components_from_config

    stored = [
        c.to_dict()
        for c in components_from_config(
            [
                *TIERED,
                {
                    "type": "package",
                    "code": "pk",
                    "metric": "m",
                    "package_size": "1000",
                    "package_price": "5",
                    "free_units": "10",
                },
                {
                    "type": "volume",
                    "code": "vol",
                    "metric": "seats",
                    "tiers": [
                        {"up_to": "10", "unit_price": "3"},
                        {"up_to": None, "unit_price": "2"},
                    ],
                },
                {
                    "type": "percentage",
                    "code": "pay",
                    "metric": "payments",
                    "rate": "0.029",
                    "fixed_fee": "0.30",
                    "min_fee": "0.50",
                    "max_fee": "25",
                },
                {
                    "type": "minimum_commitment",
                    "code": "min",
                    "amount": "500.00",
                    "metrics": ["api_calls", "storage_gb"],
                },
            ]
        )
    ]
    meta = {"pay": {"tax_code": "fin", "amount_property": "value"}}
    rows = RowList(ComponentForm, "components", tiers=True).load(rows_from_json(stored, meta))
    again = [c.to_dict() for c in components_from_config(rows.bind().to_json())]
    assert again == stored
    assert rows.meta_json() == meta


# --------------------------------------------------------------------------- hostile values

from tests.core.test_form_input import HOSTILE_AMOUNTS, HOSTILE_IDS, HOSTILE_TEXTS  # noqa: E402


def test_every_hostile_value_in_the_editors_is_a_400_next_to_its_field_and_nothing_is_saved(
    admin_client: Client, acme: Customer, usd: Currency
) -> None:
    """NaN, Infinity, 1e30, 5,000 digits or non-ASCII digits as a price, a quantity, a balance or
    a row position; NUL or 100,000 characters in a name or a reason (issue 12, item 3)."""
    p = plan("storage-2027", usd, TIERED)
    c = services.contract_create(
        code="acme-1", customer=acme, plan=p, start_date=date(2026, 1, 1), actor=ACTOR
    )
    plan_save = _plan_post(TIERED, save="1") | {"code": "other"}
    preview = _plan_post(TIERED, preview="1") | _usage([("api_calls", "10", "")])
    contract = _contract_post(acme, p, OVERRIDES) | {"save": "1"}
    amend = {"effective_from": "2026-04-01", "reason": "r", "save": "1", "change_overrides": "on"}
    amend |= _contract_post(acme, p, OVERRIDES)
    cases = [
        ("/billing/plans/new/", plan_save, "components-0-unit_price", HOSTILE_AMOUNTS),
        ("/billing/plans/new/", plan_save, "components-1-tiers-0-up_to", HOSTILE_AMOUNTS),
        ("/billing/plans/new/", plan_save, "name", HOSTILE_TEXTS),
        ("/billing/plans/new/", plan_save, "note", HOSTILE_TEXTS),
        ("/billing/plans/new/", plan_save, "components-0-ORDER", ["²", "x"]),
        ("/billing/plans/new/", preview, "usage-0-quantity", HOSTILE_AMOUNTS),
        ("/billing/plans/new/", preview, "usage-0-event_amounts", HOSTILE_AMOUNTS),
        ("/billing/plans/new/", _plan_post(TIERED), "add_tier", HOSTILE_IDS),
        ("/billing/contracts/new/", contract, "prepaid_balance", HOSTILE_AMOUNTS),
        ("/billing/contracts/new/", contract, "anchor_day", HOSTILE_IDS),
        ("/billing/contracts/new/", contract, "prices-0-unit_price", HOSTILE_AMOUNTS),
        ("/billing/contracts/new/", contract, "code", HOSTILE_TEXTS),
        (f"/billing/contracts/{c.pk}/amend/", amend, "reason", HOSTILE_TEXTS),
        (f"/billing/contracts/{c.pk}/amend/", amend, "discounts-0-percent_off", HOSTILE_AMOUNTS),
    ]
    before = (
        PricePlan.objects.count(),
        Contract.objects.count(),
        ContractAmendment.objects.count(),
    )
    client = Client(raise_request_exception=False)
    client.force_login(User.objects.get(username="integrator"))
    failures: list[tuple[object, ...]] = []
    for url, body, field, values in cases:
        for value in values:
            resp = client.post(url, body | {field: value})
            html = resp.content.decode(errors="replace")
            named = f'id="{field}-error"' in html or f"'{field}'" in html
            if resp.status_code != 400 or not (named or "ORDER" in field or field == "add_tier"):
                failures.append((url, field, value[:12], resp.status_code))
    after = (PricePlan.objects.count(), Contract.objects.count(), ContractAmendment.objects.count())
    assert not failures, "\n".join(map(str, failures))
    assert after == before


# --------------------------------------------------------------------------- the entity's rounding


def test_plan_preview_rounds_as_the_chosen_entity_and_the_run_bills_the_same_cents(
    admin_client: Client, usd: Currency
) -> None:
    """0.125 per call, 1 call: half up 0.13, half even 0.12; the preview for the half-even
    entity says 0.12, and that entity's billing run drafts 0.12."""
    from tests.billing.conftest import bill, contract, customer, entity, invoice_of, metric, send

    up = entity("ll-up", "USD", 2, "UTC")
    even = entity("ll-even", "USD", 2, "UTC")
    EntityBillingSettings.objects.create(legal_entity=even, rounding="ROUND_HALF_EVEN")
    eighth = [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.125"}]
    usage = _usage([("api_calls", "1", "")])

    def previewed(entity_code: str | None) -> str:
        post = _plan_post(eighth, preview="1") | usage
        if entity_code:
            post["preview_entity"] = entity_code
        html = admin_client.post("/billing/plans/new/", post).content.decode()
        start = html.index('id="preview-subtotal">') + len('id="preview-subtotal">')
        return html[start : html.index("</th>", start)]

    # unchosen: the first entity (by code) whose base currency is the plan's, ll-even
    assert previewed(None) == "$0.12"
    assert previewed(up.code) == "$0.13"
    assert previewed("ll-even") == "$0.12"
    metric("api_calls")
    cust = customer(even, "acme")
    c = contract(cust, plan("eighth", usd, eighth), date(2026, 9, 1))
    send(cust, "api_calls", datetime(2026, 10, 5, tzinfo=UTC), count=1)
    bill(even, "2026-10")
    assert invoice_of(c).subtotal == Decimal("0.12")


def test_a_double_save_of_an_editor_is_applied_once_and_the_second_is_told(
    admin_client: Client, acme: Customer, usd: Currency
) -> None:
    """The editors carry a one-time token (issue 12, item 4): the same save sent twice (a double
    click, a second tab) makes one plan, one contract, one amendment; a save without the token
    (an old page, a hand-made request) is refused before anything is saved."""
    page = admin_client.get("/billing/plans/new/").content.decode()
    assert 'name="idempotency_key"' in page
    save = _plan_post(TIERED, save="1")
    assert admin_client.post("/billing/plans/new/", save).status_code == 302
    again = admin_client.post("/billing/plans/new/", save)
    assert again.status_code == 400 and b"Already done: price_plan_create of" in again.content
    assert PricePlan.objects.filter(code="storage-2027").count() == 1
    p = PricePlan.objects.get(code="storage-2027")
    version = {"effective_from": "2026-06-01", "note": "v2", **_rows("components", TIERED)}
    version |= {"save": "1", "idempotency_key": uuid.uuid4().hex}
    for _ in range(2):
        admin_client.post(f"/billing/plans/{p.code}/versions/new/", version)
    assert p.versions.count() == 2

    contract = _contract_post(acme, p, OVERRIDES) | {"save": "1"}
    assert admin_client.post("/billing/contracts/new/", contract).status_code == 302
    twice = admin_client.post("/billing/contracts/new/", contract)
    assert twice.status_code == 400 and b"Already done: contract_create of" in twice.content
    c = Contract.objects.get(code="acme-2027")
    amend = _contract_post(acme, p, OVERRIDES) | {
        "effective_from": "2026-04-01",
        "plan": "",
        "reason": "renegotiated",
        "change_overrides": "on",
        "save": "1",
    }
    assert admin_client.post(f"/billing/contracts/{c.pk}/amend/", amend).status_code == 302
    twice = admin_client.post(f"/billing/contracts/{c.pk}/amend/", amend)
    assert twice.status_code == 400 and b"Already done: contract_amend of" in twice.content
    assert ContractAmendment.objects.filter(contract=c).count() == 1

    tokenless = _plan_post(TIERED, save="1") | {"code": "other"}
    del tokenless["idempotency_key"]
    refused = admin_client.post("/billing/plans/new/", tokenless)
    assert refused.status_code == 400 and b"one-time token" in refused.content
    assert not PricePlan.objects.filter(code="other").exists()
