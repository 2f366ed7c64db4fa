"""The ERP journeys of the exception queue in Chromium, against the REAL Tryton server (the
session's trytond of tests/erp_sync/conftest.py): a posting refused for a closed Tryton period
is re-dated, approved, replayed and posted; an invoice reversed by credit memo (four eyes)
reaches Tryton, to the cent. Each reads the result back from Tryton itself.

Screenshots land in tests/e2e/artifacts/ (gitignored).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core import roles
from erp_sync.models import Posting
from erp_sync.services import ledger_consume, outbox_drain
from erp_sync.tryton_rpc import TrytonClient
from exceptions.models import ExceptionCase
from tests.billing.conftest import ACTOR
from tests.e2e.test_exception_queue import _login, _shot
from tests.erp_sync.conftest import (  # noqa: F401 - the session's Tryton fixtures
    admin,
    last_month_closed_in_tryton,
    tryton_conn,
    tryton_server,
)
from tests.erp_sync.world import billed_world

pytestmark = [pytest.mark.browser, pytest.mark.tryton, pytest.mark.django_db(transaction=True)]


def _in_tryton(admin: TrytonClient, external_id: str) -> list[dict[str, Any]]:  # noqa: F811
    rows: list[dict[str, Any]] = admin.call(
        "model.account.invoice.search_read",
        [("ledgerline_external_id", "=", external_id)],
        0,
        None,
        None,
        ["state", "invoice_date", "total_amount", "number"],
        context={"company_filter": "all"},
    )
    return rows


def test_a_posting_failed_on_a_closed_tryton_period_is_redated_approved_and_posted(
    browser,
    live_server,
    make_user,
    tryton_conn,  # noqa: F811
    admin,  # noqa: F811
) -> None:
    make_user("clerk", roles.FINANCE_CLERK)
    make_user("approver", roles.FINANCE_APPROVER)
    # last month billed and finalized on its last day, so the invoice is dated in last month;
    # finance closed last month in Tryton
    with last_month_closed_in_tryton(admin, tryton_conn) as closed:
        world, today, last_day = closed.world, closed.today, closed.last_day
        outbox_drain()
        posting = Posting.objects.get(document_type="invoice")
        assert posting.status == "failed" and posting.attempts == 1, posting.last_error
        case = ExceptionCase.objects.get(kind="posting_failed", source_id=str(posting.pk))

        clerk = _login(browser, live_server, "clerk")
        clerk.goto(f"{live_server.url}/exceptions/?kind=posting_failed")
        clerk.get_by_role("link", name=str(case.pk), exact=True).click()
        clerk.wait_for_load_state()
        assert clerk.locator("#posting-date").inner_text() == last_day.isoformat()
        assert "ERP attempts" in clerk.content()
        _shot(clerk, "erp_posting_failed_case")
        clerk.fill("#posting-date-new", today.isoformat())
        form = clerk.locator("form[aria-label='Correct the posting date']")
        form.locator("select[name=reason_code]").select_option("wrong_time")
        form.locator("input[name=comment]").fill("Last month is closed in Tryton")
        form.get_by_role("button", name="Propose new date").click()
        clerk.wait_for_load_state()
        assert "waits for a different approver" in clerk.locator(".messages").inner_text()
        assert clerk.locator("#case-status").inner_text() == "Awaiting approval"

        approver = _login(browser, live_server, "approver")
        approver.goto(f"{live_server.url}/exceptions/?view=awaiting_my_approval")
        approver.get_by_role("link", name=str(case.pk), exact=True).click()
        approver.wait_for_load_state()
        changed = approver.locator("tr.changed").first.inner_text()
        assert changed.startswith("posting_date") and today.isoformat() in changed
        approver.locator("#approve").click()
        approver.wait_for_load_state()
        assert f"Dated {today.isoformat()}" in approver.locator(".messages").inner_text()
        posting.refresh_from_db()
        assert posting.status == "pending"
        # the scheduled drain (every minute) sends it, last month still closed in Tryton
        outbox_drain()
    approver.reload()
    assert approver.locator("#case-status").inner_text() == "Resolved"
    assert approver.locator("#posting-status").inner_text() == "Posted"
    _shot(approver, "erp_posting_redated_resolved")
    posting.refresh_from_db()
    (row,) = _in_tryton(admin, posting.external_id)
    assert row["state"] == "posted" and str(row["invoice_date"]) == today.isoformat()
    assert Decimal(str(row["total_amount"])) == world.invoices[0].total == Decimal("221.10")


def test_an_invoice_reversed_by_credit_memo_reaches_tryton_to_the_cent(
    browser,
    live_server,
    make_user,
    tryton_conn,  # noqa: F811
    admin,  # noqa: F811
) -> None:
    make_user("approver", roles.FINANCE_APPROVER)
    make_user("approver2", roles.FINANCE_APPROVER)
    today = timezone.now().date()
    last_day = today.replace(day=1) - timedelta(days=1)
    world = billed_world(1, month=f"{last_day:%Y-%m}", finalize_at=timezone.now())
    conn = tryton_conn(world)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    (invoice,) = world.invoices
    assert Posting.objects.get(document_type="invoice").status == "posted"

    first = _login(browser, live_server, "approver")
    first.goto(f"{live_server.url}/billing/invoices/{invoice.pk}/")
    first.check("input[name=whole]")
    first.locator("form[action$='/credit/'] input[name=reason]").fill("service outage")
    first.get_by_role("button", name="Preview credit memo…").click()
    first.wait_for_load_state()
    assert "($221.10)" in first.get_by_role("table", name="Credit memo preview").inner_text()
    first.get_by_role("button", name="Yes, propose the credit memo").click()
    first.wait_for_load_state()
    assert "waits for a different approver" in first.locator(".messages").inner_text()
    case = ExceptionCase.objects.get(kind="credit_request", source_id=str(invoice.pk))
    first.locator("#approve").click()  # the proposer may not approve it
    first.wait_for_load_state()
    assert "a different approver must approve it" in first.locator(".messages").inner_text()

    second = _login(browser, live_server, "approver2")
    second.goto(f"{live_server.url}/exceptions/cases/{case.pk}/")
    second.locator("#approve").click()
    second.wait_for_load_state()
    assert "Credit memo" in second.locator(".messages").inner_text()
    assert second.locator("#case-status").inner_text() == "Resolved"
    _shot(second, "erp_credit_memo_approved")

    ledger_consume(actor=ACTOR)
    outbox_drain()
    memo_posting = Posting.objects.get(document_type="credit_memo")
    assert memo_posting.status == "posted", memo_posting.last_error
    (row,) = _in_tryton(admin, memo_posting.external_id)
    assert row["state"] == "posted"
    # Tryton holds the credit note as an invoice of minus the memo's total, to the cent
    assert Decimal(str(row["total_amount"])) == Decimal("-221.10")
    assert conn.external_id_prefix in memo_posting.external_id
