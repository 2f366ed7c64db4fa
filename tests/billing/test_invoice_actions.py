"""selectors.invoice_actions: what the invoice page offers is what the services accept."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient
import ast
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from billing import services
from billing.models import Invoice
from billing.selectors import InvoiceAction, invoice_actions
from core.services import IssuedKey
from tests.billing.conftest import ACTOR

D = Decimal
pytestmark = pytest.mark.django_db
F, P, V, C = (
    InvoiceAction.FINALIZE,
    InvoiceAction.MARK_PAID,
    InvoiceAction.VOID,
    InvoiceAction.CREDIT,
)


def test_actions_follow_the_status_and_the_role(
    draft: Invoice, approver: User, clerk: User, auditor: User
) -> None:
    assert invoice_actions(invoice=draft, user=approver).allowed == {F}
    refused = invoice_actions(invoice=draft, user=approver).refused
    assert refused[V].code == "billing_invoice_not_final"
    assert refused[P].code == "billing_invoice_not_final"
    assert invoice_actions(invoice=draft, user=clerk).refused[F].code == "permission_denied"
    assert invoice_actions(invoice=draft, user=auditor).allowed == frozenset()

    services.invoice_finalize(invoice=draft, actor=ACTOR)
    draft.refresh_from_db()
    assert invoice_actions(invoice=draft, user=approver).allowed == {P, V, C}
    assert invoice_actions(invoice=draft, user=clerk).allowed == {P}
    refusal = invoice_actions(invoice=draft, user=approver).refused[F]
    assert draft.number is not None
    assert refusal.code == "billing_invoice_not_draft" and draft.number in refusal.message

    memo = services.credit_memo_issue(
        invoice=draft, reason="sorry", actor=ACTOR, lines={draft.lines.get().pk: D("0.10")}
    )
    draft.refresh_from_db()
    actions = invoice_actions(invoice=draft, user=approver)
    assert actions.allowed == {P, C}
    assert actions.refused[V].code == "billing_invoice_credited"
    assert invoice_actions(invoice=memo, user=approver).allowed == frozenset()

    services.invoice_mark_paid(invoice=draft, actor=ACTOR)
    draft.refresh_from_db()
    actions = invoice_actions(invoice=draft, user=approver)
    assert actions.allowed == {C} and actions.refused[V].code == "billing_invoice_paid"


def test_a_refused_action_posted_anyway_shows_the_reason_and_changes_nothing(
    client: Client, draft: Invoice, approver: User
) -> None:
    client.force_login(approver)
    page = client.post(f"/billing/invoices/{draft.pk}/paid/", follow=True).content.decode()
    assert "only finalized invoices can be marked paid. (billing_invoice_not_final)" in page
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_the_page_offers_exactly_the_allowed_actions(
    client: Client, draft: Invoice, approver: User, clerk: User
) -> None:
    services.invoice_finalize(invoice=draft, actor=ACTOR)
    client.force_login(clerk)
    page = client.get(f"/billing/invoices/{draft.pk}/").content.decode()
    assert "Record payment" in page and "/void/" not in page and "/credit/" not in page
    client.force_login(approver)
    page = client.get(f"/billing/invoices/{draft.pk}/").content.decode()
    assert "Record payment" in page and "/void/" in page and "/credit/" in page


def test_an_unknown_event_is_billings_own_not_found(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key("invoices:read").raw_key)
    response = client.get("/api/v1/usage-events/999999/invoice-lines")
    assert response.status_code == 404 and response.json()["code"] == "billing_not_found"


def test_billing_imports_metering_only_through_for_billing() -> None:
    root = Path(__file__).resolve().parents[2] / "billing"
    offenders = []
    for path in root.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [
                f"{path.relative_to(root)}: {n}"
                for n in names
                if n.split(".")[0] == "metering" and n != "metering.for_billing"
            ]
    assert offenders == []
