"""Browser journeys through the customer, receivables and history pages and the audit chain
check (issue 15, items 4 and 5), in Chromium. The amounts are those of
tests/billing/test_customer_pages.py, aged as of 2027-04-15. Screenshots go to var/e2e/."""

from __future__ import annotations

import pytest

from core.demo import load_demo_data
from tests.billing.test_customer_pages import Ageing, make_ageing
from tests.e2e.test_finance_journeys import _shot, _text
from tests.e2e.test_roles_in_browser import _login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world() -> Ageing:
    load_demo_data()  # the demo users, one per role
    return make_ageing("w")


def test_clerk_goes_from_the_customer_to_an_invoice_and_its_history(
    page, live_server, world: Ageing
) -> None:
    b = world.inv["b"]
    _login(page, live_server, "clerk")
    page.fill("input[name=q]", b.number or "")  # the search box on every page
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    page.get_by_role("link", name=b.customer.name, exact=True).first.click()
    page.wait_for_load_state()
    text = _text(page)
    assert f"Customer {b.customer.name}" in text and "net 30 days" in text
    balance = page.get_by_role("table", name="Balance per currency").inner_text()
    assert "$1,000.33" in balance  # 1,100.33 less the 100.00 paid
    _shot(page, "clerk-customer-page")
    page.get_by_role("table", name="Documents").get_by_role("link", name=b.number).click()
    page.wait_for_load_state()
    assert "Balance due: $1,000.33" in _text(page)
    page.get_by_role("link", name="History", exact=True).click()
    page.wait_for_load_state()
    history = page.get_by_role("table", name="History").inner_text()
    assert "invoice.payment_record" in history and "1000.33" in history
    assert "billing_run.drafts_create" in history
    _shot(page, "clerk-invoice-history")
    # from the invoice to its contract's page: the terms in force and its documents
    page.go_back()
    page.wait_for_load_state()
    contract = b.contract
    page.get_by_role("link", name=contract.code, exact=True).first.click()
    page.wait_for_load_state()
    text = _text(page)
    assert f"Contract {contract.code}" in text and "In force today" in text
    assert f"Plan {contract.plan.code}" in text
    docs = page.get_by_role("table", name="Documents").inner_text()
    assert b.number in docs and "$1,100.33" in docs and "(attempt 1)" in docs
    _shot(page, "clerk-contract-page")
    page.get_by_role("link", name=contract.plan.code, exact=True).first.click()
    page.wait_for_load_state()
    assert f"Price plan {contract.plan.code}" in _text(page)
    assert contract.code in page.get_by_role("table", name="Contracts on this plan").inner_text()
    _shot(page, "clerk-plan-page")


def test_receivables_are_aged_to_the_cent_in_usd_and_jpy(page, live_server, world: Ageing) -> None:
    _login(page, live_server, "approver")
    page.locator("nav[aria-label=Main]").get_by_role("link", name="Receivables").click()
    page.wait_for_load_state()
    page.select_option("select[name=legal_entity]", "w-us")
    page.fill("input[name=as_of]", "2027-04-15")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    usd = page.get_by_role("table", name="Ageing USD")
    footer = [c.replace("\u00a0", " ") for c in usd.locator("tfoot td").all_inner_texts()]
    assert footer == [
        "5",
        "$1,100.33",
        "$1,000.33",
        "$1,100.00",
        "$1,100.33",
        "$1,100.33",
        "$5,401.32",
    ]
    eur = page.get_by_role("table", name="Ageing EUR").locator("tfoot td").all_inner_texts()
    assert eur[-1] == "€1,320.83"
    _shot(page, "approver-receivables-usd")
    page.select_option("select[name=legal_entity]", "w-jp")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state()
    jpy = page.get_by_role("table", name="Ageing JPY").locator("tfoot td").all_inner_texts()
    assert jpy == ["2", "¥165,002", "¥165,002", "¥0", "¥0", "¥0", "¥330,004"]
    _shot(page, "approver-receivables-jpy")


def test_auditor_verifies_the_chain_from_the_audit_page(page, live_server, world: Ageing) -> None:
    _login(page, live_server, "auditor")
    page.locator("nav[aria-label=Main]").get_by_role("link", name="Audit trail").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Verify the chain").click()
    page.wait_for_load_state()
    result = page.locator("#verify-result").inner_text()
    assert result.startswith("The chain is intact:") and "entries verified" in result
    _shot(page, "auditor-chain-verified")
