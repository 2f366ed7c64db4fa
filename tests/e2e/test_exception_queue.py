"""The exception queue in a real browser: four eyes, customer mapping, correct and re-submit
onto the next invoice, and two people acting on one case at once.

Screenshots of the queue and a case page land in tests/e2e/artifacts/ (gitignored).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import Invoice
from core import roles
from exceptions.models import ExceptionCase
from metering import selectors as metering_selectors
from tests.billing.conftest import bill, customer, entity, metric, send
from tests.exceptions.conftest import ACTOR, billed_customer, ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "pw-for-tests-1"


def _login(browser, live_server, username: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _rejected_setup():
    """A billed customer on 1.00 per API call, one good event and one sent with a typo."""
    ent, cust, con = billed_customer()  # acme mapped as app:ll-us-acme, 1.00 per call
    at = datetime.now(UTC) - timedelta(hours=1)
    send(cust, "api_calls", at, now=datetime.now(UTC))
    bad = {
        "event_id": "typo-1",
        "source": "app",
        "customer_ref": "ll-us-acme",
        "metric": "api_cals",
        "timestamp": at.isoformat(),
    }
    assert ingest(bad).counts["rejected"] == 1
    return ent, con, at, ExceptionCase.objects.get(kind="usage_rejected")


def _propose_correction(page, live_server, case: ExceptionCase) -> None:
    rejected = metering_selectors.rejected_events().get(case_id=case.pk)
    page.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    page.get_by_role("link", name="Correct…").click()
    page.fill("#f-metric", "api_calls")
    page.select_option("select[name=reason_code]", "wrong_metric")
    page.fill("#correct textarea[name=comment]", "The producer misspelt the metric.")
    page.get_by_role("button", name="Propose correction").click()
    page.wait_for_load_state()
    assert "waits for a different approver" in page.locator(".messages").inner_text()
    assert page.locator("#case-status").inner_text() == "Awaiting approval"
    assert rejected.pk


def test_clerk_cannot_approve_own_correction(browser, live_server, make_user) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    _, _, _, case = _rejected_setup()
    page = _login(browser, live_server, "clerk")
    page.goto(f"{live_server.url}/exceptions/")
    assert page.get_by_role("link", name=str(case.pk), exact=True).count() == 1
    _shot(page, "queue")
    _propose_correction(page, live_server, case)
    page.locator("#approve").click()
    page.wait_for_load_state()
    assert "a different approver must approve it" in page.locator(".messages").inner_text()
    assert page.locator("#case-status").inner_text() == "Awaiting approval"
    case.refresh_from_db()
    assert case.status == "awaiting_approval"


def test_corrected_event_lands_on_the_next_invoice(browser, live_server, make_user) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    make_user("approver", roles.FINANCE_APPROVER)
    ent, con, at, case = _rejected_setup()
    clerk = _login(browser, live_server, "clerk")
    _propose_correction(clerk, live_server, case)
    approver = _login(browser, live_server, "approver")
    approver.goto(f"{live_server.url}/exceptions/?view=awaiting_my_approval")
    approver.get_by_role("link", name=str(case.pk), exact=True).click()
    assert approver.locator("tr.changed").first.inner_text().startswith("metric")
    _shot(approver, "case_awaiting_approval")
    approver.locator("#approve").click()
    approver.wait_for_load_state()
    assert "Corrected event re-ingested: accepted" in approver.locator(".messages").inner_text()
    assert approver.locator("#case-status").inner_text() == "Resolved"
    _shot(approver, "case_resolved")

    bill(ent, at.strftime("%Y-%m"))
    invoice = Invoice.objects.get(contract=con, kind="invoice")
    usage = invoice.lines.get(kind="usage")
    assert (usage.quantity, usage.amount) == (Decimal("2"), Decimal("2.00"))  # 1 sent + 1 corrected
    approver.goto(f"{live_server.url}/billing/invoices/{invoice.pk}/")
    assert "2.00" in approver.content()


def test_customer_mapping_releases_held_events(browser, live_server, make_user) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    make_user("approver", roles.FINANCE_APPROVER)
    ent = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(ent, "acme")
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    ev = {"source": "app", "customer_ref": "acme-eu", "metric": "api_calls", "timestamp": at}
    assert ingest({**ev, "event_id": "h1"}, {**ev, "event_id": "h2"}).counts["held"] == 2
    case = ExceptionCase.objects.get(kind="unmapped_customer")
    clerk = _login(browser, live_server, "clerk")
    clerk.goto(f"{live_server.url}/exceptions/?kind=unmapped_customer")
    clerk.get_by_role("link", name=str(case.pk), exact=True).click()
    assert "Held events (2)" in clerk.content()
    clerk.select_option("#map-customer", str(cust.pk))
    clerk.fill("form[action$='map_customer/'] input[name=comment]", "EU account of Acme")
    clerk.get_by_role("button", name="Propose mapping").click()
    clerk.wait_for_load_state()
    approver = _login(browser, live_server, "approver")
    approver.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    approver.locator("#approve").click()
    approver.wait_for_load_state()
    assert "2 held event(s) released" in approver.locator(".messages").inner_text()
    assert approver.locator("#case-status").inner_text() == "Resolved"
    assert metering_selectors.held_events(source="app", customer_ref="acme-eu").count() == 0
    assert ACTOR  # the events were sent by the tests' system actor


def test_two_browsers_act_on_one_case_one_wins(browser, live_server, make_user) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    make_user("approver", roles.FINANCE_APPROVER)
    make_user("approver2", roles.FINANCE_APPROVER)
    _, _, _, case = _rejected_setup()
    clerk = _login(browser, live_server, "clerk")
    _propose_correction(clerk, live_server, case)
    first = _login(browser, live_server, "approver")
    second = _login(browser, live_server, "approver2")
    for p in (first, second):
        p.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    first.locator("#approve").click()
    first.wait_for_load_state()
    second.locator("#approve").click()
    second.wait_for_load_state()
    assert "Applied" in first.locator(".messages").inner_text()
    told = second.locator(".messages").inner_text()
    assert "changed by someone else" in told and "Nothing was applied" in told
    from exceptions.models import AuditEntry

    applied = AuditEntry.objects.filter(
        object_type="exceptions.exceptioncase", object_id=str(case.pk), action="proposal.apply"
    )
    assert applied.count() == 1


def test_the_queue_works_with_the_keyboard_alone(browser, live_server, make_user) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    _, _, _, case = _rejected_setup()
    page = _login(browser, live_server, "clerk")
    page.goto(f"{live_server.url}/exceptions/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    target = f"/exceptions/cases/{case.pk}/"
    for _ in range(80):  # Tab through the filters to the first case
        page.keyboard.press("Tab")
        if (page.evaluate("document.activeElement.getAttribute('href')") or "").endswith(target):
            break
    else:
        pytest.fail("the case link cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{target}")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # the skip link again, then into the actions with Tab
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "assignee":
            break
    else:
        pytest.fail("the assign form cannot be reached with Tab")
    page.keyboard.press("ArrowDown")  # nobody -> the first user (clerk)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "Assigned to clerk" in page.locator(".messages").inner_text()


def test_taking_the_new_version_of_a_duplicate_bills_it(browser, live_server, make_user) -> None:
    """A product re-sent a storage reading with another value: the clerk takes the new
    version, a different approver approves, and the invoice bills the new value."""
    from tests.exceptions.test_take_new_version import send as send_reading
    from tests.exceptions.test_take_new_version import world

    make_user("clerk", roles.FINANCE_CLERK)
    make_user("approver", roles.FINANCE_APPROVER)
    ent, _, con = world()  # 0.40 USD per GB
    at = datetime.now(UTC) - timedelta(hours=1)
    send_reading("s-1", at, "10", now=datetime.now(UTC))
    assert send_reading("s-1", at, "12.25", now=datetime.now(UTC)).conflicting == {0}
    case = ExceptionCase.objects.get(kind="duplicate_conflict")

    clerk = _login(browser, live_server, "clerk")
    clerk.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    assert "12.25" in clerk.locator("#conflicts").inner_text()
    form = clerk.get_by_role("form", name="Take the new version")
    form.locator("input[name=comment]").fill("The meter was re-read; the second reading is right.")
    form.get_by_role("button", name="Propose the new version").click()
    clerk.wait_for_load_state()
    assert "waits for a different approver" in clerk.locator(".messages").inner_text()
    assert clerk.locator("#case-status").inner_text() == "Awaiting approval"
    clerk.locator("#approve").click()  # the clerk cannot approve it
    clerk.wait_for_load_state()
    assert clerk.locator("#case-status").inner_text() == "Awaiting approval"

    approver = _login(browser, live_server, "approver")
    approver.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    changed = approver.locator("tr.changed").all_inner_texts()
    assert any(row.startswith("properties") and "12.25" in row for row in changed)
    _shot(approver, "case_take_new_version")
    approver.locator("#approve").click()
    approver.wait_for_load_state()
    assert "New version of app:s-1 taken" in approver.locator(".messages").inner_text()
    assert approver.locator("#case-status").inner_text() == "Resolved"
    assert "taken" in approver.locator("#conflicts").inner_text()

    bill(ent, at.strftime("%Y-%m"))
    invoice = Invoice.objects.get(contract=con, kind="invoice")
    usage = invoice.lines.get(kind="usage")
    # 12.25 GB x 0.40 = 4.90 (the first reading would have billed 10 x 0.40 = 4.00)
    assert (usage.quantity, usage.amount) == (Decimal("12.25"), Decimal("4.90"))
    approver.goto(f"{live_server.url}/billing/invoices/{invoice.pk}/")
    assert "4.90" in approver.content() and "4.00" not in approver.content()
