"""The invoice one could send (issue 15, item 6): the printable page and its PDF.

The PDF is opened with pypdf and its text read back: number, both parties' addresses and tax
ids, issue and due dates, payment terms, service period, each line, tax per rate and totals to
the cent, in USD (2 minor units), JPY (0) and BHD (3). The amounts are the hand-computed ones of
tests/billing/test_money_pages.py:

  USD  1,000.00 + 3 x 0.10 = 1,000.30; tax 10 % = 100.03; total 1,100.33
  JPY  150,000 + 3 x 0.5 = 1.5 -> 2: 150,002; tax 10 % = 15,000; total 165,002
  BHD  1,045.500 + 13 x 0.0125 = 0.1625 -> 0.163: 1,045.663; tax 10 % = 104.566; total 1,150.229
"""

from __future__ import annotations

import io
from collections.abc import Callable
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pypdf import PdfReader
from rest_framework.test import APIClient

from billing import services
from billing.models import Invoice
from core.models import Customer, LegalEntity
from core.services import IssuedKey
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import World, make_world

pytestmark = pytest.mark.django_db


def _text(pdf: bytes) -> str:
    """The PDF's text with runs of whitespace (spaces, no-break spaces, newlines) as one space."""
    reader = PdfReader(io.BytesIO(pdf))
    raw = "\n".join(page.extract_text() or "" for page in reader.pages)
    return re.sub(r"\s+", " ", raw.replace("\u00a0", " "))


def _address(invoice: Invoice, n: str) -> None:
    seller, buyer = invoice.legal_entity, invoice.customer
    seller.address = f"{n} Seller Street\nSellertown {n}"
    seller.tax_id = f"SELLER-TAX-{n}"
    seller.save()
    buyer.address = f"{n} Buyer Road\nBuyerville {n}"
    buyer.tax_id = f"BUYER-TAX-{n}"
    buyer.save()


def _pdf(client: Client, invoice: Invoice) -> tuple[str, str]:
    response = client.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert response.content.startswith(b"%PDF-")
    return _text(response.content), response["Content-Disposition"]


@pytest.fixture
def world() -> World:
    return make_world()


def _final(invoice: Invoice, n: str) -> Invoice:
    _address(invoice, n)
    return services.invoice_finalize(invoice=invoice, actor=ACTOR)


def test_pdf_has_parties_dates_terms_lines_tax_and_totals_in_three_currencies(
    client: Client, world: World, auditor: User
) -> None:
    client.force_login(auditor)
    expected = {
        "1": (
            world.usd,
            ["$1,000.00", "$0.30", "$1,000.30", "10 % on $1,000.30", "$100.03", "$1,100.33"],
        ),
        "2": (world.jpy, ["¥150,000", "¥2", "¥150,002", "10 % on ¥150,002", "¥15,000", "¥165,002"]),
        "3": (
            world.bhd,
            [
                "BHD 1,045.500",
                "BHD 0.163",
                "BHD 1,045.663",
                "10 % on BHD 1,045.663",
                "BHD 104.566",
                "BHD 1,150.229",
            ],
        ),
    }
    for n, (draft, amounts) in expected.items():
        inv = _final(draft, n)
        text, _ = _pdf(client, inv)
        assert inv.number and inv.number in text
        for part in (
            f"{n} Seller Street Sellertown {n}",
            f"Tax ID: SELLER-TAX-{n}",
            f"{n} Buyer Road Buyerville {n}",
            f"Tax ID: BUYER-TAX-{n}",
            inv.legal_entity.name,
            inv.customer.name,
        ):
            assert part in text, (part, text)
        assert inv.issue_date is not None
        due = inv.issue_date + timedelta(days=30)
        assert f"Issue date {inv.issue_date:%Y-%m-%d}" in text
        assert f"Due date {due:%Y-%m-%d}" in text
        assert "Payment terms Net 30 days" in text
        assert "Service period 2026-11-01 – 2026-11-30" in text
        for line in inv.lines.all():
            assert line.description in text, (line.description, text)
        for amount in amounts:
            assert amount in text, (amount, text)
        total = amounts[-1]
        assert f"Amount due: {total} by {due:%Y-%m-%d}" in text


def test_credit_memo_pdf_names_the_invoice_and_shows_negatives_in_parentheses(
    client: Client, world: World, auditor: User
) -> None:
    inv = _final(world.usd, "1")
    memo = services.credit_memo_issue(invoice=inv, reason="goodwill", actor=ACTOR)
    assert memo.total == Decimal("-1100.33")
    client.force_login(auditor)
    text, _ = _pdf(client, memo)
    assert memo.number and memo.number in text and "Credit memo" in text
    assert f"Corrects Credit memo for invoice {inv.number}" in text
    assert "($1,000.30)" in text and "($100.03)" in text and "($1,100.33)" in text
    assert f"lowers what is owed on invoice {inv.number} by $1,100.33" in text
    assert "Tax ID: BUYER-TAX-1" in text and "1 Seller Street" in text
    assert "Due date" not in text  # a credit memo falls due on nothing


def test_printable_page_links_the_pdf_and_drafts_say_so(
    client: Client, world: World, clerk: User
) -> None:
    client.force_login(clerk)
    page = client.get(f"/billing/invoices/{world.usd.pk}/print/").content.decode()
    assert f'href="/billing/invoices/{world.usd.pk}/pdf/"' in page
    assert "DRAFT: not a valid invoice" in page
    detail = client.get(f"/billing/invoices/{world.usd.pk}/").content.decode()
    assert f'href="/billing/invoices/{world.usd.pk}/pdf/"' in detail
    draft_pdf = client.get(f"/billing/invoices/{world.usd.pk}/pdf/")
    assert draft_pdf["Content-Disposition"] == f'attachment; filename="draft-{world.usd.pk}.pdf"'
    assert "DRAFT" in _text(draft_pdf.content)


def test_pdf_needs_a_viewer_role(client: Client, world: World, make_user) -> None:  # type: ignore[no-untyped-def]
    client.force_login(make_user("nobody"))
    assert client.get(f"/billing/invoices/{world.usd.pk}/pdf/").status_code == 403
    assert client.get("/billing/invoices/999999/pdf/").status_code in (403, 404)


def test_customer_api_takes_and_returns_address_and_tax_id(
    entity_us: LegalEntity,
    make_api_key: Callable[..., IssuedKey],
    api_client: Callable[[str], APIClient],
) -> None:
    from core.models import ApiScope, Customer
    from exceptions.models import AuditEntry

    api = api_client(make_api_key(ApiScope.ADMIN).raw_key)
    body = {
        "legal_entity": "ll-us",
        "code": "wayne",
        "name": "Wayne Enterprises",
        "address": "1007 Mountain Drive\nGotham, NJ 07001",
        "tax_id": "EIN 11-2223334",
    }
    response = api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["address"] == body["address"]
    assert response.json()["tax_id"] == "EIN 11-2223334"
    stored = Customer.objects.get(code="wayne")
    assert (stored.address, stored.tax_id) == (body["address"], body["tax_id"])
    assert (
        AuditEntry.objects.filter(action="customer.create", object_id=str(stored.pk)).count() == 1
    )
    listed = api.get("/api/v1/customers", {"code": "wayne"}).json()["results"][0]
    assert listed["tax_id"] == "EIN 11-2223334"
    entities = api.get("/api/v1/legal-entities").json()["results"]
    assert {"address", "tax_id"} <= set(entities[0])


def test_addresses_and_tax_ids_are_edited_in_the_admin(
    client: Client, integrator: User, customer_acme: Customer
) -> None:
    client.force_login(integrator)
    for url in (
        f"/admin/core/customer/{customer_acme.pk}/change/",
        f"/admin/core/legalentity/{customer_acme.legal_entity_id}/change/",
    ):
        page = client.get(url).content.decode()
        assert 'name="address"' in page and 'name="tax_id"' in page, url
