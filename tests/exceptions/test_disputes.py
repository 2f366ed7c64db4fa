"""A customer dispute opened from the invoice page ends in a credit memo approved by a second
person (amounts to the cent), or in a reasoned rejection."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from billing import services as billing_services
from billing.models import Invoice
from exceptions.models import ExceptionCase
from tests.billing.conftest import ACTOR, bill, send
from tests.exceptions.conftest import finalized_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice() -> Invoice:
    invoice: Invoice = finalized_invoice()
    return invoice


def _client(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_invoice_page_links_to_a_dispute_and_the_credit_needs_a_second_person(
    invoice, clerk, approver
) -> None:
    clerk_c = _client(clerk)
    page = clerk_c.get(f"/billing/invoices/{invoice.pk}/").content.decode()
    assert f"/exceptions/disputes/new/?invoice={invoice.pk}" in page
    line = invoice.lines.get(kind="usage")
    assert line.amount == Decimal("3.00")
    r = clerk_c.post(
        "/exceptions/disputes/new/",
        {"invoice": invoice.pk, "line": line.pk, "comment": "We made only 2 calls that day."},
        follow=True,
    )
    case = ExceptionCase.objects.get(kind="customer_dispute")
    assert "Dispute case" in r.content.decode()
    assert case.customer is not None
    assert (case.amount_at_stake, case.currency_id, case.customer.code) == (
        Decimal("3.00"),
        "USD",
        "acme",
    )
    case_page = clerk_c.get(f"/exceptions/cases/{case.pk}/").content.decode()
    assert "Events behind the disputed line" in case_page
    clerk_c.post(
        f"/exceptions/cases/{case.pk}/reverse/",
        {
            "version": case.version,
            "amount": "1.00",
            "reason_code": "customer_dispute",
            "comment": "One call was a retry of ours.",
        },
    )
    case.refresh_from_db()
    assert case.status == "awaiting_approval"
    assert not Invoice.objects.filter(kind="credit_memo").exists()
    done = _client(approver).post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    )
    assert "Credit memo" in done.content.decode()
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.total == Decimal("-1.00") and memo.credits_id == invoice.pk
    case.refresh_from_db()
    assert case.status == "resolved"


def test_a_dispute_can_be_rejected_with_a_reason(invoice, clerk) -> None:
    from exceptions.workbench.disputes import dispute_open
    from exceptions.workbench.services import Caller, case_dismiss

    me = Caller.for_user(clerk)
    line = invoice.lines.get(kind="usage")
    case = dispute_open(invoice_id=invoice.pk, line_id=line.pk, comment="too high", caller=me)
    case_dismiss(
        case_id=case.pk,
        reason_code="dispute_rejected",
        comment="Usage matches the product's logs.",
        caller=me,
        version=None,
    )
    case.refresh_from_db()
    assert case.status == "dismissed" and case.resolution.startswith("Dispute rejected")
    assert not Invoice.objects.filter(kind="credit_memo").exists()


def test_a_dispute_ends_in_the_late_usage_adjustment_billing_issued_against_the_invoice(
    invoice, clerk
) -> None:
    from exceptions.workbench.disputes import dispute_open
    from exceptions.workbench.services import Caller

    line = invoice.lines.get(kind="usage")
    case = dispute_open(
        invoice_id=invoice.pk,
        line_id=line.pk,
        comment="We made 4 calls, one is missing.",
        caller=Caller.for_user(clerk),
    )
    c = _client(clerk)
    page = c.get(f"/exceptions/cases/{case.pk}/").content.decode()
    assert "no adjustment has been issued against this invoice yet" in page
    # the missing call arrives late; December's run corrects November by an adjustment invoice
    send(invoice.customer, "api_calls", datetime(2026, 11, 20, tzinfo=UTC))
    bill(invoice.legal_entity, "2026-12")
    adjustment = Invoice.objects.get(kind="adjustment", credits=invoice)
    billing_services.invoice_finalize(invoice=adjustment, actor=ACTOR)
    adjustment.refresh_from_db()
    assert adjustment.total == Decimal("1.00")

    case.refresh_from_db()
    page = c.get(f"/exceptions/cases/{case.pk}/").content.decode()
    assert 'aria-label="Settle by an adjustment"' in page and str(adjustment) in page
    refused = c.post(
        f"/exceptions/cases/{case.pk}/settle_adjustment/",
        {
            "version": case.version,
            "document": invoice.pk,
            "reason_code": "late_usage",
            "comment": "x",
        },
        follow=True,
    ).content.decode()
    assert "document: that is not a finalized adjustment" in refused
    done = c.post(
        f"/exceptions/cases/{case.pk}/settle_adjustment/",
        {
            "version": case.version,
            "document": adjustment.pk,
            "reason_code": "late_usage",
            "comment": "The late call is billed by the adjustment.",
        },
        follow=True,
    ).content.decode()
    assert "Dispute settled" in done
    case.refresh_from_db()
    assert (case.status, case.resolution_code) == ("resolved", "adjustment")
    assert f"{adjustment} ($1.00)" in case.resolution
