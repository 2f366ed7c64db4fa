"""Billing pages, the bill command and the schedule: roles are checked on the server."""

from __future__ import annotations

from collections.abc import Callable

from core import roles
from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

from django.contrib.auth.models import User
from django.test import Client
from pytest_django import DjangoCaptureOnCommitCallbacks
import pytest
from django.core.management import call_command
from django_q.models import Schedule

from exceptions.models import ExceptionCase
from billing.models import BillingRun, Invoice
from billing.tasks import billing_run_task
from exceptions.models import AuditEntry
from tests.billing.conftest import contract, customer, entity, invoice_of, metric, plan, send

D = Decimal
pytestmark = pytest.mark.django_db
API = {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}


def test_invoice_pages_for_finance_roles_only(
    client: Client, draft: Invoice, clerk: User, auditor: User, make_user: Callable[..., User]
) -> None:
    client.force_login(auditor)
    page = client.get("/billing/invoices/", {"customer": "acme", "period": "2026-11"})
    assert page.status_code == 200 and f"draft #{draft.pk}" in page.content.decode()
    detail = client.get(f"/billing/invoices/{draft.pk}/").content.decode()
    assert "0.30" in detail and "3 events" in detail and "/finalize/" not in detail
    assert "Finalize: Only finance approver or integration admin may finalize." in detail
    assert client.get(f"/billing/invoices/{draft.pk}/print/").status_code == 200
    line = draft.lines.get()
    lineage = client.get(f"/billing/lines/{line.pk}/").content.decode()
    assert "api_calls" in lineage and lineage.count("<tr><td>") >= 3
    assert line.usage_summary is not None
    seq = str(line.usage_summary.watermark_seq)
    assert f"draft #{draft.pk}" in client.get("/billing/events/", {"seq": seq}).content.decode()
    # an auditor cannot finalize, even by posting directly
    assert client.post(f"/billing/invoices/{draft.pk}/finalize/").status_code == 403
    nobody = make_user("nobody")
    client.force_login(nobody)
    assert client.get("/billing/invoices/").status_code == 403


def test_approver_finalizes_credits_and_voids_through_the_pages(
    client: Client,
    draft: Invoice,
    approver: User,
    clerk: User,
    make_user: Callable[..., User],
) -> None:
    client.force_login(approver)
    client.post(
        f"/billing/invoices/{draft.pk}/finalize/", {"confirmed": "1", "idempotency_key": "f1"}
    )
    draft.refresh_from_db()
    assert draft.status == "finalized" and draft.number
    line = draft.lines.get()
    assert "(up to $0.30)" in client.get(f"/billing/invoices/{draft.pk}/").content.decode()
    credit = {
        f"line_{line.pk}": "0.10",
        "reason": "sorry",
        "confirmed": "1",
        "idempotency_key": "c1",
    }
    # confirmed on the billing page alone, nothing is issued (four eyes, invariant 6)
    client.post(f"/billing/invoices/{draft.pk}/credit/", credit)
    assert not Invoice.objects.filter(kind="credit_memo").exists()
    client.post(f"/exceptions/invoices/{draft.pk}/credit/", credit)
    from exceptions.models import ExceptionCase

    case = ExceptionCase.objects.get(kind="credit_request")
    client.force_login(make_user("approver2", roles.FINANCE_APPROVER))
    client.post(f"/exceptions/cases/{case.pk}/approve/", {"version": case.version})
    client.force_login(approver)
    assert "(up to $0.20)" in client.get(f"/billing/invoices/{draft.pk}/").content.decode()
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.total == D("-0.10")
    # voiding a credited invoice is refused with the reason shown, nothing changes
    response = client.post(
        f"/billing/invoices/{draft.pk}/void/", {"reason": "x", "confirmed": "1"}, follow=True
    )
    assert "billing_invoice_credited" in response.content.decode()
    client.force_login(clerk)
    assert client.post(f"/billing/invoices/{draft.pk}/void/", {"reason": "x"}).status_code == 403
    client.post(
        f"/billing/invoices/{draft.pk}/paid/",
        {
            "amount": "0.20",
            "received_on": "2026-12-10",
            "method": "bank_transfer",
            "idempotency_key": "p1",
        },
    )
    draft.refresh_from_db()
    assert draft.status == "paid"
    assert (
        AuditEntry.objects.filter(action="invoice.mark_paid", object_id=str(draft.pk)).count() == 1
    )


def test_runs_page_starts_a_run_for_integration_admins_and_polls_progress(
    client: Client,
    integrator: User,
    approver: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: queued.append(a))
    client.force_login(approver)
    assert (
        client.post("/billing/runs/start/", {"entity": "ll-us", "period": "2026-10"}).status_code
        == 403
    )
    client.force_login(integrator)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/billing/runs/start/",
            {"entity": "ll-us", "period": "2026-10", "idempotency_key": "r1"},
        )
    run = BillingRun.objects.get(legal_entity=us)
    assert queued == [("billing.tasks.billing_run_task", run.pk, "integrator")]
    row = client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    assert 'hx-trigger="every 2s"' in row  # pending: keeps polling
    billing_run_task(run.pk, "integrator")
    row = client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    assert "hx-trigger" not in row and "Done" in row
    page = client.get("/billing/runs/").content.decode()
    assert "Run billing" in page
    future = client.post(
        "/billing/runs/start/",
        {"entity": "ll-us", "period": "2099-01", "idempotency_key": "r2"},
        follow=True,
    )
    assert "billing_period_not_closed" in future.content.decode()


def test_bill_command_shows_progress_and_finalizes() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(cust, plan("basic", us.base_currency, [API]), date(2026, 9, 1))
    send(cust, "api_calls", datetime(2026, 10, 30, tzinfo=UTC), count=4)
    out = StringIO()
    call_command("bill", "--period", "2026-10", "--entity", us.code, "--finalize", stdout=out)
    text = out.getvalue()
    assert "100%" in text and "1 document(s) finalized" in text
    inv = invoice_of(c)
    assert inv.status == "finalized" and inv.total == D("0.40")


def test_bill_reports_what_this_run_did_not_running_totals() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("payments", aggregation="sum", value_property="amount", accepts_negative=True)
    p = plan(
        "pct",
        us.base_currency,
        [{"type": "percentage", "code": "pay", "metric": "payments", "rate": "0.01"}],
        meta={"pay": {"amount_property": "amount"}},
    )
    ok, broken = customer(us, "ok"), customer(us, "broken")
    contract(ok, p, date(2026, 10, 1))
    contract(broken, p, date(2026, 10, 1))
    send(ok, "payments", datetime(2026, 10, 3, tzinfo=UTC), properties={"amount": "10.00"})
    send(broken, "payments", datetime(2026, 10, 3, tzinfo=UTC), properties={"amount": "-5.00"})
    first = StringIO()
    call_command("bill", "--period", "2026-10", "--entity", us.code, stdout=first)
    case = ExceptionCase.objects.get(kind="billing_rating_failed")
    assert "ll-us 2026-10: 1 invoice(s), 0 correction(s) drafted, 1 failed" in first.getvalue()
    assert f"case {case.pk}: Contract " in first.getvalue()

    late = customer(us, "late")
    contract(late, p, date(2026, 10, 1))
    send(late, "payments", datetime(2026, 10, 4, tzinfo=UTC), properties={"amount": "20.00"})
    second = StringIO()
    call_command("bill", "--period", "2026-10", "--entity", us.code, stdout=second)
    # this run drafted the late contract only (the run's total is 2) and failed the broken again
    assert "ll-us 2026-10: 1 invoice(s), 0 correction(s) drafted, 1 failed" in second.getvalue()
    # each run is its own attempt with its own counts (decision 52)
    assert list(
        BillingRun.objects.filter(legal_entity=us)
        .order_by("attempt")
        .values_list("attempt", "invoices_created")
    ) == [(1, 1), (2, 1)]


def test_billing_schedule_exists() -> None:
    schedule = Schedule.objects.get(func="billing.tasks.billing_runs_due")
    assert schedule.schedule_type == Schedule.HOURLY and schedule.repeats == -1


def test_scheduled_task_bills_last_closed_month_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from billing.tasks import billing_runs_due

    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(cust, plan("basic", us.base_currency, [API]), date(2026, 9, 1))
    send(cust, "api_calls", datetime(2026, 10, 30, tzinfo=UTC), count=2)
    monkeypatch.setattr("billing.tasks.timezone.now", lambda: datetime(2026, 11, 24, 7, tzinfo=UTC))
    [run_id] = billing_runs_due()
    assert BillingRun.objects.get(pk=run_id).period_start == date(2026, 10, 1)
    assert invoice_of(c).total == D("0.20")
    assert billing_runs_due() == []  # done already: safe to run twice
    monkeypatch.setattr("billing.tasks.timezone.now", lambda: datetime(2026, 12, 1, 11, tzinfo=UTC))
    assert billing_runs_due() == []  # November still in its grace window


def test_admin_pages_render_for_integration_admins(client: Client, integrator: User) -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    p = plan("basic", us.base_currency, [API])
    c = contract(customer(us, "acme"), p, date(2026, 10, 1))
    client.force_login(integrator)
    for url in (
        f"/admin/billing/priceplan/{p.pk}/change/",
        f"/admin/billing/contract/{c.pk}/change/",
        "/admin/billing/invoice/",
        "/admin/billing/financeevent/",
        "/admin/billing/taxrate/add/",
    ):
        assert client.get(url).status_code == 200, url


def test_pages_show_periods_with_their_last_day(
    client: Client, draft: Invoice, auditor: User
) -> None:
    """Periods are stored half-open (end = 1 Dec); people read 1 Nov – 30 Nov."""
    assert draft.period_end == date(2026, 12, 1)
    client.force_login(auditor)
    for url in (
        f"/billing/invoices/{draft.pk}/",
        f"/billing/invoices/{draft.pk}/print/",
        "/billing/invoices/",
    ):
        html = client.get(url).content.decode()
        assert "2026-11-01 – 2026-11-30" in html, url
        assert "2026-12-01" not in html, url


def test_runs_page_offers_to_finalize_only_while_drafts_remain(
    client: Client, draft: Invoice, approver: User
) -> None:
    client.force_login(approver)
    run = draft.billing_run
    assert run is not None
    assert "Finalize 1 draft<" in client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    client.post(f"/billing/runs/{run.pk}/finalize/", {"idempotency_key": "rf1"})
    draft.refresh_from_db()
    assert draft.status == "finalized"
    assert "Finalize 1 draft<" not in client.get("/billing/runs/").content.decode()
    assert (
        '<button type="submit">Finalize'
        not in client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    )


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/billing/invoices/?customer=acme", "/billing/invoices/?customer=acme"),
        ("https://evil.example/phish", "/billing/invoices/"),
        ("//evil.example/phish", "/billing/invoices/"),
    ],
)
def test_finalize_selected_returns_only_within_the_site(
    client: Client, draft: Invoice, approver: User, next_url: str, lands_on: str
) -> None:
    client.force_login(approver)
    body = {"invoice": [draft.pk], "next": next_url, "idempotency_key": "fs1"}
    answer = client.post("/billing/invoices/finalize/", body)
    assert answer.status_code == 302 and answer["Location"] == lands_on
    draft.refresh_from_db()
    assert draft.status == "finalized"
