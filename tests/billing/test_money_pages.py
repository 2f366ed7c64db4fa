"""Money as money on the billing pages, in the CSV export and in the API (issue 15, item 1).

Four currencies with hand-computed invoices for November 2026 (fixed fees are billed in advance,
usage in arrears, tax per rate rounded half-up to the minor unit):

  USD  1,000.00 + 3 x 0.10 = 1,000.30; tax 10 % = 100.03; total 1,100.33
  EUR  1,200.00 + 3 x 0.25 = 1,200.75; tax 19 % = 228.1425 -> 228.14; total 1,428.89
  JPY  150,000 + 3 x 0.5 = 1.5 -> 2: 150,002; tax 10 % = 15,000.2 -> 15,000; total 165,002
  BHD  1,045.500 + 13 x 0.0125 = 0.1625 -> 0.163: 1,045.663; tax 10 % = 104.566; total 1,150.229
"""

from __future__ import annotations

from collections.abc import Callable
import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient
import pytest

from billing import services
from billing.models import Invoice
from core.models import ApiScope
from core.services import IssuedKey
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    metric,
    plan,
    send,
    tax_rate,
)

D = Decimal
NBSP = "\u00a0"
pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class World:
    usd: Invoice
    eur: Invoice
    jpy: Invoice
    bhd: Invoice


def _one(
    prefix: str, code: str, cur: str, minor: int, fee: str, price: str, rate: str, calls: int
) -> Invoice:
    ent = entity(f"{prefix}-{code}", cur, minor, "UTC")
    tax_rate(ent, rate, name=f"VAT {code}")
    cust = customer(ent, f"cust-{code}")
    p = plan(
        f"plan-{code}",
        ent.base_currency,
        [
            {"type": "fixed_fee", "code": "platform", "amount": fee},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": price},
        ],
    )
    c = contract(cust, p, date(2026, 10, 1))
    send(cust, "api_calls", datetime(2026, 11, 3, tzinfo=UTC), count=calls)
    bill(ent, "2026-11")
    return invoice_of(c)


def make_world(prefix: str = "ll") -> World:
    """The four invoices above; entities are `<prefix>-us`, `-de`, `-jp`, `-bh`."""
    metric("api_calls")
    return World(
        usd=_one(prefix, "us", "USD", 2, "1000.00", "0.10", "0.10", 3),
        eur=_one(prefix, "de", "EUR", 2, "1200.00", "0.25", "0.19", 3),
        jpy=_one(prefix, "jp", "JPY", 0, "150000", "0.5", "0.10", 3),
        bhd=_one(prefix, "bh", "BHD", 3, "1045.500", "0.0125", "0.10", 13),
    )


@pytest.fixture
def world() -> World:
    return make_world()


def test_hand_computed_totals(world: World) -> None:
    assert (world.usd.subtotal, world.usd.tax_total, world.usd.total) == (
        D("1000.30"),
        D("100.03"),
        D("1100.33"),
    )
    assert (world.eur.tax_total, world.eur.total) == (D("228.14"), D("1428.89"))
    assert (world.jpy.subtotal, world.jpy.tax_total, world.jpy.total) == (
        D("150002"),
        D("15000"),
        D("165002"),
    )
    assert (world.bhd.subtotal, world.bhd.tax_total, world.bhd.total) == (
        D("1045.663"),
        D("104.566"),
        D("1150.229"),
    )


def test_invoice_page_shows_money_rates_and_quantities(
    client: Client, world: World, auditor: User
) -> None:
    client.force_login(auditor)
    usd = client.get(f"/billing/invoices/{world.usd.pk}/").content.decode()
    assert "$1,000.30" in usd and "$100.03" in usd and "$1,100.33" in usd
    assert f"10{NBSP}%" in usd and "0.100000" not in usd
    assert '<td class="num">3</td>' in usd  # quantity without trailing zeros
    eur = client.get(f"/billing/invoices/{world.eur.pk}/").content.decode()
    assert "€1,200.75" in eur and "€228.14" in eur and "€1,428.89" in eur and f"19{NBSP}%" in eur
    jpy = client.get(f"/billing/invoices/{world.jpy.pk}/").content.decode()
    assert "¥150,002" in jpy and "¥15,000" in jpy and "¥165,002" in jpy
    assert "165002.0000" not in jpy and "¥165,002." not in jpy
    bhd = client.get(f"/billing/invoices/{world.bhd.pk}/print/").content.decode()
    assert f"BHD{NBSP}1,045.663" in bhd and f"BHD{NBSP}104.566" in bhd
    assert f"BHD{NBSP}1,150.229" in bhd and f"BHD{NBSP}0.163" in bhd


def test_credit_memo_amounts_are_written_in_parentheses(
    client: Client, world: World, auditor: User
) -> None:
    final = services.invoice_finalize(invoice=world.usd, actor=ACTOR)
    memo = services.credit_memo_issue(invoice=final, reason="goodwill", actor=ACTOR)
    assert memo.total == D("-1100.33")
    client.force_login(auditor)
    page = client.get(f"/billing/invoices/{memo.pk}/").content.decode()
    assert "($1,100.33)" in page and "($100.03)" in page


def test_list_has_a_currency_column_and_totals_per_currency_never_summed(
    client: Client, world: World, auditor: User
) -> None:
    client.force_login(auditor)
    page = client.get("/billing/invoices/").content.decode()
    totals = page[page.index('aria-label="Totals per currency"') :]
    for text in ("$1,100.33", "€1,428.89", "¥165,002", f"BHD{NBSP}1,150.229"):
        assert text in totals
    assert "<th>Currency</th>" in page
    # no figure adds amounts of different currencies (e.g. 1100.33 + 1428.89 = 2529.22)
    assert "2,529.22" not in page and "2529.22" not in page


def test_csv_export_has_plain_amounts_in_minor_units_beside_their_currency(
    client: Client, world: World, auditor: User
) -> None:
    client.force_login(auditor)
    response = client.get("/billing/invoices/export.csv", {"kind": "invoice"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_currency = {r["currency"]: (r["subtotal"], r["tax_total"], r["total"]) for r in rows}
    assert by_currency == {
        "USD": ("1000.30", "100.03", "1100.33"),
        "EUR": ("1200.75", "228.14", "1428.89"),
        "JPY": ("150002", "15000", "165002"),
        "BHD": ("1045.663", "104.566", "1150.229"),
    }
    only_de = client.get("/billing/invoices/export.csv", {"legal_entity": "ll-de"}).content
    assert len(list(csv.DictReader(io.StringIO(only_de.decode())))) == 1


def test_api_amounts_carry_the_currencys_minor_units(
    world: World, make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    api = api_client(make_api_key(ApiScope.INVOICES_READ).raw_key)
    jpy = api.get(f"/api/v1/invoices/{world.jpy.pk}").json()
    assert (jpy["subtotal"], jpy["tax_total"], jpy["total"]) == ("150002", "15000", "165002")
    assert [ln["amount"] for ln in jpy["lines"]] == ["2", "150000"]
    assert jpy["tax_lines"][0]["amount"] == "15000" and jpy["tax_lines"][0]["rate"] == "0.100000"
    bhd = api.get(f"/api/v1/invoices/{world.bhd.pk}").json()
    assert bhd["total"] == "1150.229" and bhd["lines"][0]["amount"] == "0.163"
    usd = api.get("/api/v1/invoices", {"legal_entity": "ll-us"}).json()["results"][0]
    assert usd["total"] == "1100.33" and usd["credited_total"] == "0.00"
    lines = api.get(f"/api/v1/invoices/{world.bhd.pk}/lines").json()["results"]
    assert [ln["amount"] for ln in lines] == ["0.163", "1045.500"]
