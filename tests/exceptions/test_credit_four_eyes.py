"""Invariant 6 on billing's invoice page: a credit memo confirmed there is a proposal in the
exception queue, issued only when a different approver approves it (the case page's rule)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from billing import services as billing
from billing.models import Invoice
from core import roles
from exceptions.models import CaseProposal, ExceptionCase
from tests.billing.conftest import ACTOR, invoice_of
from tests.exceptions.conftest import billed_customer

pytestmark = pytest.mark.django_db
D = Decimal


def _finalized() -> Invoice:
    """acme's invoice for 3 calls at 1.00 (no tax), finalized."""
    from datetime import UTC, datetime

    from tests.billing.conftest import bill, send

    ent, cust, con = billed_customer()
    send(cust, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=3)
    bill(ent, "2026-11")
    inv = invoice_of(con)
    return billing.invoice_finalize(invoice=inv, actor=ACTOR)


def _as(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_an_approver_alone_cannot_issue_a_credit_memo_from_the_invoice_page(make_user) -> None:
    approver = make_user("approver", roles.FINANCE_APPROVER)
    inv = _finalized()
    line = inv.lines.get(kind="usage")
    body = {f"line_{line.pk}": "1.00", "reason": "one call billed twice", "confirmed": "1"}
    body["idempotency_key"] = "c1"
    page = _as(approver)
    # posting the confirmed form straight to billing (as the page did) issues nothing
    said = page.post(f"/billing/invoices/{inv.pk}/credit/", body, follow=True).content.decode()
    assert not Invoice.objects.filter(kind="credit_memo").exists()
    assert "approved by a second person" in said
    # the preview's "yes" goes to the exception queue
    preview = page.post(
        f"/billing/invoices/{inv.pk}/credit/", {**body, "confirmed": ""}
    ).content.decode()
    assert f'action="/exceptions/invoices/{inv.pk}/credit/"' in preview
    proposed = page.post(f"/exceptions/invoices/{inv.pk}/credit/", body, follow=True)
    assert "waits for a different approver" in proposed.content.decode()
    case = ExceptionCase.objects.get(kind="credit_request", source_id=str(inv.pk))
    assert case.status == "awaiting_approval" and case.amount_at_stake == D("1.00")
    assert not Invoice.objects.filter(kind="credit_memo").exists()

    own = page.post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    ).content.decode()
    assert "self_approval" in own and not Invoice.objects.filter(kind="credit_memo").exists()

    second = _as(make_user("approver2", roles.FINANCE_APPROVER))
    case.refresh_from_db()
    done = second.post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    ).content.decode()
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.total == D("-1.00") and memo.credits_id == inv.pk
    assert f"Credit memo {memo} issued" in done
    case.refresh_from_db()
    assert case.status == "resolved"
    proposal = CaseProposal.objects.get(case=case)
    assert (proposal.proposed_by_label, proposal.approved_by_label) == ("approver", "approver2")


def test_a_clerk_is_refused_the_invoice_pages_credit_memo(make_user) -> None:
    clerk = make_user("clerk", roles.FINANCE_CLERK)
    inv = _finalized()
    body = {"whole": "1", "reason": "x", "confirmed": "1"}
    assert _as(clerk).post(f"/billing/invoices/{inv.pk}/credit/", body).status_code == 403


def test_an_approver_alone_cannot_issue_a_credit_memo_through_the_api(
    make_api_key, api_client, clerk
) -> None:
    """Billing's invoice API only reads: no path of it issues a credit memo. The exception
    queue's API proposes one (reverse), and the key that proposed it cannot approve it."""
    from core.models import ApiScope
    from exceptions.workbench.disputes import dispute_open
    from exceptions.workbench.services import Caller

    inv = _finalized()
    line = inv.lines.get(kind="usage")
    key = make_api_key(ApiScope.ADMIN, ApiScope.INVOICES_READ, name="ops")
    ops = api_client(key.raw_key)
    body = {"whole": True, "reason": "goodwill", "lines": {str(line.pk): "1.00"}}
    for path in (
        f"/api/v1/invoices/{inv.pk}",
        f"/api/v1/invoices/{inv.pk}/lines",
        f"/api/v1/invoices/{inv.pk}/credit",
        f"/api/v1/invoices/{inv.pk}/credit-memo",
        f"/api/v1/invoices/{inv.pk}/credit-memos",
        f"/api/v1/invoice-lines/{line.pk}/lineage",
    ):
        refused = ops.post(path, body, format="json")
        assert refused.status_code in (404, 405), (path, refused.status_code)
    assert not Invoice.objects.filter(kind="credit_memo").exists()

    case = dispute_open(
        invoice_id=inv.pk,
        line_id=line.pk,
        comment="one call was a test",
        caller=Caller.for_user(clerk),
    )
    url = f"/api/v1/exception-cases/{case.pk}/actions/"
    proposed = ops.post(
        url + "reverse",
        {"version": case.version, "amount": "1.00", "reason_code": "goodwill", "comment": "ok"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r-1",
    )
    assert proposed.status_code == 200, proposed.json()
    assert proposed.json()["case"]["status"] == "awaiting_approval"
    version = proposed.json()["case"]["version"]
    own = ops.post(url + "approve", {"version": version}, format="json")
    assert own.status_code == 403 and own.json()["code"] == "self_approval"
    assert not Invoice.objects.filter(kind="credit_memo").exists()

    second = api_client(make_api_key(ApiScope.ADMIN, name="ops2").raw_key)
    approved = second.post(url + "approve", {"version": version}, format="json")
    assert approved.status_code == 200 and approved.json()["case"]["status"] == "resolved"
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.total == D("-1.00") and memo.credits_id == inv.pk
