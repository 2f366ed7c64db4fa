"""Safe invoice actions (issue 15, item 3): payments with a balance due, confirmations that say
what will happen, a credit memo preview, refused actions shown with their reason."""

from __future__ import annotations

from core import roles

from datetime import date, timedelta
from decimal import Decimal
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing import services
from billing.models import FinanceEvent, Invoice, Payment
from core.errors import AppError
from exceptions.models import AuditEntry
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import make_world

D = Decimal
NBSP = "\u00a0"
pytestmark = pytest.mark.django_db


@pytest.fixture
def usd() -> Invoice:
    """A finalized USD invoice of $1,100.33 (1,000.30 net + 100.03 tax at 10 %)."""
    return services.invoice_finalize(invoice=make_world().usd, actor=ACTOR)


def _pay(inv: Invoice, amount: str, **kw: Any) -> Payment:
    args: dict[str, Any] = {
        "received_on": date(2026, 12, 10),
        "method": "bank_transfer",
        "reference": "WIRE-1",
    }
    args.update(kw)
    return services.invoice_payment_record(invoice=inv, amount=D(amount), actor=ACTOR, **args)


def test_partial_payments_leave_a_balance_and_the_last_one_marks_it_paid(usd: Invoice) -> None:
    from billing.selectors import invoice_balance_due

    _pay(usd, "600.00")
    usd.refresh_from_db()
    assert usd.status == "finalized" and invoice_balance_due(invoice=usd) == D("500.33")
    partial = FinanceEvent.objects.get(type="invoice.payment_recorded")
    assert partial.payload["payment"] == {
        "id": Payment.objects.get(invoice=usd).pk,
        "amount": "600.00",
        "date": "2026-12-10",
        "method": "bank_transfer",
        "reference": "WIRE-1",
        "balance_due": "500.33",
    }
    _pay(usd, "500.33", method="card", reference="CH-9", received_on=date(2026, 12, 12))
    usd.refresh_from_db()
    assert usd.status == "paid" and usd.paid_at is not None
    assert invoice_balance_due(invoice=usd) == D("0")
    paid = FinanceEvent.objects.get(type="invoice.paid").payload
    # the keys erp_sync reads are kept; the payment's facts are added
    assert set(paid["document"]) == {"id", "number", "currency", "total", "paid_at"}
    assert paid["document"]["number"] == usd.number and paid["document"]["currency"] == "USD"
    assert paid["payment"] == {
        "id": Payment.objects.get(invoice=usd, reference="CH-9").pk,
        "amount": "500.33",
        "date": "2026-12-12",
        "method": "card",
        "reference": "CH-9",
        "balance_due": "0.00",
    }
    assert [a.action for a in AuditEntry.objects.filter(object_id=str(usd.pk)).order_by("id")][
        -2:
    ] == ["invoice.payment_record", "invoice.mark_paid"]


def test_payments_beyond_the_balance_or_finer_than_a_cent_are_refused(usd: Invoice) -> None:
    services.credit_memo_issue(
        invoice=usd,
        reason="goodwill",
        actor=ACTOR,
        lines={usd.lines.get(kind="usage").pk: D("0.30")},
    )
    usd.refresh_from_db()
    # 1,100.33 - credit 0.33 (0.30 + 10 % tax) = 1,100.00 due
    with pytest.raises(AppError) as exceeds:
        _pay(usd, "1100.01")
    assert exceeds.value.code == "billing_payment_exceeds"
    assert exceeds.value.extra == {"balance_due": "1100.00"}
    with pytest.raises(AppError) as fine:
        _pay(usd, "10.005")
    assert fine.value.code == "billing_payment_invalid"
    with pytest.raises(AppError) as method:
        _pay(usd, "10.00", method="bitcoin")
    assert method.value.code == "billing_payment_invalid"
    assert not Payment.objects.exists()
    services.invoice_mark_paid(invoice=usd, actor=ACTOR)  # the whole balance
    assert Payment.objects.get().amount == D("1100.00")


def test_a_draft_takes_no_payment(usd: Invoice) -> None:
    other = Invoice.objects.filter(status="draft").first()
    assert other is not None
    with pytest.raises(AppError) as refused:
        _pay(other, "1.00")
    assert refused.value.code == "billing_invoice_not_final"


def test_the_database_refuses_a_non_positive_payment(usd: Invoice) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(
            invoice=usd,
            currency_id="USD",
            amount=D("0"),
            received_on=date(2026, 12, 1),
            method="card",
            recorded_by="x",
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="append-only trigger: PostgreSQL")
def test_the_database_refuses_to_change_or_delete_a_payment(usd: Invoice) -> None:
    payment = _pay(usd, "1.00")
    with pytest.raises(DatabaseError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).update(amount=D("2.00"))
    with pytest.raises(DatabaseError), transaction.atomic():
        Payment.objects.filter(pk=payment.pk).delete()


def test_invoice_page_shows_balance_due_and_due_date(
    client: Client, usd: Invoice, clerk: User
) -> None:
    _pay(usd, "100.33")
    client.force_login(clerk)
    page = client.get(f"/billing/invoices/{usd.pk}/").content.decode()
    assert usd.issue_date is not None
    due = usd.issue_date + timedelta(days=30)
    assert "Balance due: $1,000.00" in page and f"due {due:%Y-%m-%d} (net 30 days)" in page
    assert "WIRE-1" in page and "$100.33" in page
    assert 'name="amount" value="1000.00"' in page  # the form offers the balance
    printable = client.get(f"/billing/invoices/{usd.pk}/print/").content.decode()
    assert f"<th>Due date</th><td>{due:%Y-%m-%d}</td>" in printable
    assert "<th>Payment terms</th><td>Net 30 days</td>" in printable
    assert f"Amount due: $1,000.00</strong> by {due:%Y-%m-%d}" in printable  # after the payment
    # the clerk is not offered void or credit, and is told why
    assert "/void/" not in page and "Void: Only finance approver may void." in page


def test_recording_a_payment_through_the_page(client: Client, usd: Invoice, clerk: User) -> None:
    client.force_login(clerk)
    body = {"amount": "1100.33", "received_on": "2026-12-11", "method": "cheque", "reference": "C7"}
    body["idempotency_key"] = "p1"
    page = client.post(f"/billing/invoices/{usd.pk}/paid/", body, follow=True).content.decode()
    assert f"Payment of $1,100.33 recorded; {usd.number} is paid." in page
    bad = {**body, "amount": "lots", "idempotency_key": "p2"}
    page = client.post(f"/billing/invoices/{usd.pk}/paid/", bad, follow=True).content.decode()
    assert "billing_invoice_not_final" in page  # it is paid now: refused before the amount


def test_finalize_and_void_ask_first_and_say_what_will_happen(
    client: Client, approver: User
) -> None:
    draft = make_world().eur
    client.force_login(approver)
    ask = client.post(f"/billing/invoices/{draft.pk}/finalize/", {"idempotency_key": "t1"})
    text = ask.content.decode()
    assert ask.status_code == 200 and "What will happen" in text
    assert "next number of ll-de" in text and "posted to the ERP connections of LL-DE" in text
    assert 'name="idempotency_key" value="t1"' in text and 'name="confirmed" value="1"' in text
    draft.refresh_from_db()
    assert draft.status == "draft"  # nothing happened yet
    client.post(
        f"/billing/invoices/{draft.pk}/finalize/", {"idempotency_key": "t1", "confirmed": "1"}
    )
    draft.refresh_from_db()
    assert draft.status == "finalized"
    ask = client.post(f"/billing/invoices/{draft.pk}/void/", {"reason": "wrong customer"})
    assert "keeps its number" in ask.content.decode() and "wrong customer" in ask.content.decode()
    draft.refresh_from_db()
    assert draft.status == "finalized"


def test_credit_memo_form_previews_net_tax_and_gross(
    client: Client, usd: Invoice, approver: User, make_user: Callable[..., User]
) -> None:
    line = usd.lines.get(kind="usage")
    client.force_login(approver)
    body = {f"line_{line.pk}": "0.30", "reason": "sorry", "idempotency_key": "c1"}
    text = client.post(f"/billing/invoices/{usd.pk}/credit/", body).content.decode()
    preview = text[text.index('aria-label="Credit memo preview"') :]
    assert "($0.30)" in preview and "($0.03)" in preview and "($0.33)" in preview
    assert not Invoice.objects.filter(kind="credit_memo").exists()
    # the preview's "yes" proposes it in the exception queue (four eyes): nothing issued yet
    assert f'action="/exceptions/invoices/{usd.pk}/credit/"' in text
    proposed = client.post(
        f"/exceptions/invoices/{usd.pk}/credit/", {**body, "confirmed": "1"}, follow=True
    ).content.decode()
    assert "waits for a different approver" in proposed
    assert not Invoice.objects.filter(kind="credit_memo").exists()
    client.force_login(make_user("approver2", roles.FINANCE_APPROVER))
    from exceptions.models import ExceptionCase

    case = ExceptionCase.objects.get(kind="credit_request", source_id=str(usd.pk))
    done = client.post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    ).content.decode()
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.total == D("-0.33") and f"Credit memo {memo.number} issued" in done
