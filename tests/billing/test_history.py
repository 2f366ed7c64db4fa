"""The history tab of an invoice (issue 15, item 4, for invoices): its own audit entries, the batch
entries naming it and its credit memos', as field-by-field changes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
import pytest

from billing import selectors, services
from exceptions.history import FieldChange, field_changes
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import make_world

pytestmark = pytest.mark.django_db


def test_field_changes_show_only_what_changed() -> None:
    assert field_changes({"status": "draft", "total": "1"}, {"status": "paid", "total": "1"}) == [
        FieldChange("status", "draft", "paid")
    ]
    assert field_changes(None, {"lines": {"3": "0.10"}}) == [
        FieldChange("lines", "—", '{"3": "0.10"}')
    ]


def test_invoice_history_names_run_batch_payment_and_credit_memo(
    client: Client, auditor: User
) -> None:
    w = make_world()
    services.invoices_finalize(invoice_ids=[w.usd.pk, w.eur.pk], actor=ACTOR)
    w.usd.refresh_from_db()
    services.invoice_payment_record(
        invoice=w.usd,
        amount=Decimal("100.00"),
        received_on=date(2026, 12, 3),
        method="card",
        reference="R1",
        actor=ACTOR,
    )
    memo = services.credit_memo_issue(
        invoice=w.usd,
        reason="goodwill",
        actor=ACTOR,
        lines={w.usd.lines.get(kind="usage").pk: Decimal("0.30")},
    )
    rows = selectors.invoice_history(invoice=w.usd)
    actions = [r.action for r in rows]
    assert actions[0] == "billing_run.drafts_create" and rows[0].via.startswith("billing run")
    assert "invoices.finalize" in actions and "invoice.payment_record" in actions
    batch = rows[actions.index("invoices.finalize")]
    assert w.usd.number is not None
    assert batch.via.startswith("batch") and FieldChange("number", "—", w.usd.number) in [
        c for c in batch.changes if c.field == "number"
    ]
    payment = rows[actions.index("invoice.payment_record")]
    assert FieldChange("balance_due", "1100.33", "1000.33") in payment.changes
    assert any(r.via == memo.number for r in rows)  # the memo's own entries
    # a batch entry shows this invoice's number only, not the whole batch's
    assert all(c.field != "numbers" for r in rows for c in r.changes)

    client.force_login(auditor)
    page = client.get(f"/billing/invoices/{w.usd.pk}/history/").content.decode()
    assert "invoice.payment_record" in page and "balance_due" in page and "1000.33" in page
    assert (
        f'href="/billing/invoices/{w.usd.pk}/history/"'
        in client.get(f"/billing/invoices/{w.usd.pk}/").content.decode()
    )
