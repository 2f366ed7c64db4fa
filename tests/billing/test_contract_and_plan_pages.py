"""The contract and price plan pages (issue 15): terms readable as tables, money through the one
formatter, linked from the customer, invoice, list and editor pages and the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing import services
from billing.models import Contract, Invoice, PricePlan
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

pytestmark = pytest.mark.django_db

TIERED = {
    "type": "graduated",
    "code": "api",
    "metric": "api_calls",
    "description": "API calls",
    "tiers": [
        {"up_to": "1000", "unit_price": "0.0025"},
        {"up_to": None, "unit_price": "0.001", "flat_fee": "1250"},
    ],
}
PLATFORM = {"type": "fixed_fee", "code": "platform", "amount": "1234.5"}


@dataclass
class World:
    basic: PricePlan
    pro: PricePlan
    contract: Contract
    invoice: Invoice


@pytest.fixture
def world() -> World:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    acme = customer(us, "acme")
    basic = plan("basic", us.base_currency, [TIERED, PLATFORM])
    services.price_plan_version_add(
        plan=basic,
        effective_from=date(2026, 3, 1),
        components=[{**TIERED, "tiers": [{"up_to": None, "unit_price": "0.002"}]}, PLATFORM],
        note="cheaper calls",
        actor=ACTOR,
    )
    pro = plan(
        "pro",
        us.base_currency,
        [
            {**PLATFORM, "amount": "999"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.003"},
        ],
    )
    c = contract(
        acme,
        basic,
        date(2026, 1, 1),
        overrides={
            "prices": [{"component": "platform", "amount": "1000"}],
            "discounts": [{"percent_off": "12.5", "description": "launch partner"}],
        },
    )
    send(acme, "api_calls", datetime(2026, 1, 10, tzinfo=UTC), count=3)
    bill(us, "2026-01")
    services.contract_amend(
        contract=c,
        effective_from=date(2026, 6, 1),
        plan=pro,
        overrides={"caps": [{"component": "api", "max_amount": "900"}]},
        reason="upgraded to pro",
        actor=ACTOR,
    )
    return World(basic, pro, c, invoice_of(c))


def test_contract_page_reads_the_terms_in_force_overrides_amendments_and_documents(
    client: Client, world: World, clerk: User
) -> None:
    client.force_login(clerk)
    page = client.get(f"/billing/contracts/{world.contract.pk}/").content.decode()
    c = world.contract
    assert f'href="/billing/customers/{c.customer_id}/">Acme (acme)</a>' in page
    # today (after 1 June) the amendment's plan and overrides are in force
    assert (
        f'Plan <a href="/billing/plans/{world.pro.pk}/">pro</a> pro, version 1 from 2026-01-01'
        in (page)
    )
    assert "terms since 2026-06-01" in page
    assert "Amount per period: $999.00" in page  # pro's platform fee
    assert "Cap per period: $900.00" in page and "Unit price: $0.003" in page
    # the overrides at signature, as tables, not JSON
    assert "Amount per period: $1,000.00" in page
    assert "Discount: 12.5&nbsp;%" in page and "launch partner" in page
    assert "whole invoice" in page
    main = page[page.index("<h1>") :]
    assert "percent_off" not in main and "{&#x27;" not in main and '{"' not in main
    # the amendment
    assert "upgraded to pro" in page and f'href="/billing/plans/{world.pro.pk}/">pro</a>' in page
    # its documents, each linked, money formatted
    inv = world.invoice
    assert f'href="/billing/invoices/{inv.pk}/"' in page
    assert f'<td class="num">{"$"}{inv.total:,.2f}</td>' in page
    assert (
        f'href="/billing/runs/{inv.billing_run_id}/">#{inv.billing_run_id} (attempt 1)</a>' in page
    )
    assert f'href="/billing/contracts/{c.pk}/history/">History</a>' in page
    assert "/amend/" not in page  # the clerk edits no contract
    assert 'href="/billing/contracts/"' not in page  # nor reads the list (integrator, auditor)


def test_plan_page_shows_each_version_its_tiers_and_the_contracts_on_it(
    client: Client, world: World, auditor: User
) -> None:
    client.force_login(auditor)
    page = client.get(f"/billing/plans/{world.basic.pk}/").content.decode()
    assert "Version 2: from 2026-03-01" in page and "cheaper calls" in page
    assert "Version 1: from 2026-01-01 until 2026-02-28" in page
    assert page.index("Version 2:") < page.index("Version 1:")  # newest first
    assert "Graduated tiers" in page and "API calls" in page
    # version 1's tiers, as rows: above, up to, unit price, flat fee
    assert (
        '<td class="num">0</td><td class="num">1,000</td><td class="num">$0.0025</td>'
        '<td class="num">$0.00</td>'
    ) in page
    assert (
        '<td class="num">1,000</td><td class="num">and more</td><td class="num">$0.001</td>'
        '<td class="num">$1,250.00</td>'
    ) in page
    assert "Amount per period: $1,234.50" in page
    assert f'href="/billing/contracts/{world.contract.pk}/">{world.contract.code}</a>' in page
    assert f'href="/billing/plans/{world.basic.pk}/history/">History</a>' in page
    assert "/versions/new/" not in page  # the auditor edits no plan
    pro = client.get(f"/billing/plans/{world.pro.pk}/").content.decode()
    assert f"{world.contract.code}</a> <small>(amended to it)</small>" in pro


def test_the_pages_are_linked_from_the_customer_invoice_lists_and_editors(
    client: Client, world: World, integrator: User, clerk: User
) -> None:
    c, inv = world.contract, world.invoice
    contract_link = f'href="/billing/contracts/{c.pk}/"'
    plan_link = f'href="/billing/plans/{world.basic.pk}/"'
    client.force_login(clerk)
    customer_page = client.get(f"/billing/customers/{c.customer_id}/").content.decode()
    assert contract_link in customer_page and plan_link in customer_page
    assert contract_link in client.get(f"/billing/invoices/{inv.pk}/").content.decode()
    client.force_login(integrator)
    assert plan_link in client.get("/billing/plans/").content.decode()
    contracts = client.get("/billing/contracts/").content.decode()
    assert contract_link in contracts and plan_link in contracts
    assert contract_link in client.get(f"/billing/contracts/{c.pk}/amend/").content.decode()
    assert plan_link in client.get("/billing/plans/basic/versions/new/").content.decode()
    editor = client.get(f"/billing/contracts/{c.pk}/").content.decode()
    assert f'href="/billing/contracts/{c.pk}/amend/">Amend</a>' in editor
    plan_page = client.get(f"/billing/plans/{world.basic.pk}/").content.decode()
    assert 'href="/billing/plans/basic/versions/new/">New version</a>' in plan_page
    history = client.get(f"/billing/contracts/{c.pk}/history/").content.decode()
    assert contract_link in history  # the history tab leads back to the contract


def test_the_admin_change_pages_link_to_the_form_editors_and_pages(
    client: Client, world: World, integrator: User
) -> None:
    c = world.contract
    version = world.basic.versions.get(version=1)
    client.force_login(integrator)
    contract_admin = client.get(f"/admin/billing/contract/{c.pk}/change/").content.decode()
    assert f'<a href="/billing/contracts/{c.pk}/amend/">Amend (form editor)</a>' in contract_admin
    assert f'<a href="/billing/contracts/{c.pk}/">Contract page</a>' in contract_admin
    version_admin = client.get(
        f"/admin/billing/priceplanversion/{version.pk}/change/"
    ).content.decode()
    assert (
        '<a href="/billing/plans/basic/versions/new/">New version (form editor)</a>'
        in version_admin
    )
    assert f'<a href="/billing/plans/{world.basic.pk}/">Plan page</a>' in version_admin
    plan_admin = client.get(f"/admin/billing/priceplan/{world.basic.pk}/change/").content.decode()
    assert f'<a href="/billing/plans/{world.basic.pk}/">Plan page</a>' in plan_admin
    add = client.get("/admin/billing/contract/add/").content.decode()
    assert '<a href="/billing/contracts/new/">New contract (form editor)</a>' in add


def test_unknown_contract_and_plan_are_404_pages(client: Client, clerk: User) -> None:
    client.force_login(clerk)
    assert client.get("/billing/contracts/999999/").status_code == 404
    assert client.get("/billing/plans/999999/").status_code == 404
