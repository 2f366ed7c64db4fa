"""Search by document number or customer name from every page (issue 15, item 5, in part)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import User
from django.test import Client
import pytest

from billing import services
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import make_world

pytestmark = pytest.mark.django_db


def test_search_finds_documents_by_number_and_customers_by_name(
    client: Client, clerk: User, make_user: Callable[..., User]
) -> None:
    w = make_world()
    final = services.invoice_finalize(invoice=w.jpy, actor=ACTOR)
    assert final.number is not None
    client.force_login(clerk)
    home = client.get("/billing/invoices/").content.decode()
    assert 'action="/billing/search/"' in home  # the box is in the top bar of every page
    by_number = client.get("/billing/search/", {"q": final.number[-6:]}).content.decode()
    docs = by_number[by_number.index('aria-label="Documents found"') :]
    assert final.number in docs and "¥165,002" in docs and "Cust-Us" not in docs
    by_name = client.get("/billing/search/", {"q": "cust-de"}).content.decode()
    customers = by_name[by_name.index('aria-label="Customers found"') :]
    assert "Cust-De" in customers and f"draft #{w.eur.pk}" in by_name
    assert "Cust-Jp" not in customers
    nothing = client.get("/billing/search/", {"q": "zzz"}).content.decode()
    assert "No document matches" in nothing and "No customer matches" in nothing
    client.force_login(make_user("nobody"))
    assert client.get("/billing/search/", {"q": "x"}).status_code == 403
