"""Each finance role's journey through the invoice pages in Chromium, reading formatted amounts in
USD, EUR, JPY and BHD (three minor units). Screenshots go to var/e2e/ (gitignored; override with
E2E_ARTIFACTS) as the run's artifacts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from billing import services
from core.demo import load_demo_data
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import World, make_world
from tests.e2e.test_roles_in_browser import _login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", Path(__file__).resolve().parents[2] / "var/e2e"))
NBSP = "\u00a0"


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def world() -> World:
    load_demo_data()  # the demo users, one per role
    w = make_world("w")
    services.invoice_finalize(invoice=w.usd, actor=ACTOR)
    services.invoice_finalize(invoice=w.jpy, actor=ACTOR)
    return w


def _text(page) -> str:
    return page.locator("main").inner_text().replace(NBSP, " ")


def test_clerk_reads_totals_per_currency_and_records_a_partial_payment(
    page, live_server, world: World
) -> None:
    _login(page, live_server, "clerk")
    page.goto(f"{live_server.url}/billing/invoices/?legal_entity=")
    totals = page.get_by_role("table", name="Totals per currency").inner_text().replace(NBSP, " ")
    for amount in ("$1,100.33", "€1,428.89", "¥165,002", "BHD 1,150.229"):
        assert amount in totals
    _shot(page, "clerk-invoice-list")
    page.goto(f"{live_server.url}/billing/invoices/{world.usd.pk}/")
    assert "Balance due: $1,100.33" in _text(page)
    page.fill("input[name=amount]", "100.33")
    page.select_option("select[name=method]", "bank_transfer")
    page.fill("input[name=reference]", "WIRE-77")
    page.get_by_role("button", name="Record payment").click()
    page.wait_for_load_state()
    text = _text(page)
    assert "Payment of $100.33 recorded; $1,000.00 is still due." in text
    assert "Balance due: $1,000.00" in text and "WIRE-77" in text
    assert page.get_by_role("button", name="Void…").count() == 0  # not the clerk's to do
    _shot(page, "clerk-partial-payment")


def test_approver_finalizes_after_confirming_and_previews_a_credit_memo(
    page, live_server, world: World
) -> None:
    _login(page, live_server, "approver")
    page.goto(f"{live_server.url}/billing/invoices/{world.eur.pk}/")
    assert "€1,428.89" in _text(page) and "19 %" in _text(page)
    page.get_by_role("button", name="Finalize…").click()
    page.wait_for_load_state()
    ask = _text(page)
    assert "What will happen" in ask and "posted to the ERP connections of W-DE" in ask
    _shot(page, "approver-finalize-confirm")
    page.get_by_role("button", name="Yes, finalize").click()
    page.wait_for_load_state()
    assert re.search(r"Finalized as INV-2026-\d{6}\.", _text(page))

    page.goto(f"{live_server.url}/billing/invoices/{world.jpy.pk}/")
    page.check("input[name=whole]")
    page.locator("form[action$='/credit/'] input[name=reason]").fill("service outage")
    page.get_by_role("button", name="Preview credit memo…").click()
    page.wait_for_load_state()
    preview = page.get_by_role("table", name="Credit memo preview").inner_text()
    assert "(¥150,002)" in preview and "(¥15,000)" in preview and "(¥165,002)" in preview
    _shot(page, "approver-credit-preview")
    page.get_by_role("button", name="Yes, propose the credit memo").click()
    page.wait_for_load_state()
    # four eyes: the memo waits on its case for a different approver (invariant 6)
    assert "waits for a different approver" in _text(page)
    assert page.locator("#case-status").inner_text() == "Awaiting approval"


def test_auditor_reads_the_printable_invoice_and_is_offered_no_action(
    page, live_server, world: World
) -> None:
    _login(page, live_server, "auditor")
    page.goto(f"{live_server.url}/billing/invoices/{world.bhd.pk}/")
    text = _text(page)
    assert "BHD 1,150.229" in text and "BHD 104.566" in text and "10 %" in text
    assert page.locator("main form[method=post]").count() == 0
    assert "Finalize: Only finance approver or integration admin may finalize." in text
    _shot(page, "auditor-invoice")
    page.goto(f"{live_server.url}/billing/invoices/{world.bhd.pk}/print/")
    body = page.locator("body").inner_text().replace(NBSP, " ")
    assert "BHD 1,045.663" in body and "BHD 0.163" in body
    _shot(page, "auditor-print")
