"""The integrator builds a tiered price plan in Chromium, row by row, previews a price, fixes
an error shown next to its field, and saves; the stored plan is what was typed.

Preview, hand-computed (USD, half-up at the line): storage 1,500 GB on graduated tiers
100 x $0.10 = $10.00, then 1,400 x $0.05 = $70.00 plus the tier's flat fee $5.00: $85.00;
the platform fee $99.00; subtotal $184.00. Screenshots go to var/e2e/ (gitignored).
"""

from __future__ import annotations

import pytest

from billing.models import PricePlan
from core.demo import load_demo_data
from exceptions.models import AuditEntry
from tests.e2e.test_finance_journeys import NBSP, _shot
from tests.e2e.test_roles_in_browser import _login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _click(page, name: str, *, nth: int = 0) -> None:
    page.get_by_role("button", name=name).nth(nth).click()
    page.wait_for_load_state()


def test_integrator_builds_a_tiered_plan_and_previews_a_price(page, live_server) -> None:
    load_demo_data()
    _login(page, live_server, "integrator")
    page.goto(f"{live_server.url}/billing/plans/")
    page.get_by_role("link", name="New price plan").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "New price plan"

    page.fill("#id_code", "storage-e2e")
    page.fill("#id_name", "Storage (browser)")
    page.select_option("#id_currency", "USD")
    page.fill("#id_effective_from", "2026-01-01")

    # component 1: graduated storage, two tiers
    page.select_option("#id_components-0-type", "graduated")
    _click(page, "Apply changes")
    page.fill("#id_components-0-code", "storage")
    page.fill("#id_components-0-metric", "storage_gb")
    _click(page, "Add tier")
    _click(page, "Add tier")
    page.fill("#id_components-0-tiers-0-up_to", "100")
    page.fill("#id_components-0-tiers-0-unit_price", "0.10")
    page.fill("#id_components-0-tiers-1-unit_price", "0.05")
    page.fill("#id_components-0-tiers-1-flat_fee", "5")

    # component 2: a fixed platform fee, unprorated
    _click(page, "Add component")
    page.select_option("#id_components-1-type", "fixed_fee")
    _click(page, "Apply changes")
    page.fill("#id_components-1-code", "platform")
    page.fill("#id_components-1-amount", "99.00")
    page.select_option("#id_components-1-prorate", "false")
    assert page.locator("#id_components-1-metric").count() == 0  # a fixed fee has no metric

    # a mistake the rating config refuses, shown next to its field
    page.fill("#id_components-0-tiers-1-up_to", "50")
    page.fill("#id_usage-0-metric", "storage_gb")
    page.fill("#id_usage-0-quantity", "1500")
    _click(page, "Preview price")
    error = page.locator("#components-0-tiers-1-up_to-error")
    assert "the last tier must have up_to = null" in error.inner_text()
    _shot(page, "plan-editor-error")

    page.fill("#id_components-0-tiers-1-up_to", "")
    _click(page, "Preview price")
    result = page.get_by_role("table", name="Preview result")
    text = result.inner_text().replace(NBSP, " ")
    assert "$85.00" in text and "$99.00" in text
    assert page.locator("#preview-subtotal").inner_text() == "$184.00"
    _shot(page, "plan-editor-preview")

    _click(page, "Create the plan")
    assert page.url.endswith("/billing/plans/")
    assert "Price plan storage-e2e created" in page.locator(".messages").inner_text()
    version = PricePlan.objects.get(code="storage-e2e").versions.get()
    assert version.components == [
        {
            "type": "graduated",
            "code": "storage",
            "metric": "storage_gb",
            "free_units": "0",
            "description": "",
            "tiers": [
                {"up_to": "100", "unit_price": "0.10", "flat_fee": "0"},
                {"up_to": None, "unit_price": "0.05", "flat_fee": "5"},
            ],
        },
        {
            "type": "fixed_fee",
            "code": "platform",
            "amount": "99.00",
            "prorate": False,
            "description": "",
        },
    ]
    assert (
        AuditEntry.objects.filter(action="price_plan.version_add", actor_label="integrator").count()
        == 1
    )
    _shot(page, "plan-editor-saved")
