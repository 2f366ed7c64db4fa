"""Customer page, receivables ageing, run history and the history tabs (issue 15, items 4, 5, 8).

The ageing world: ll-us bills five customers 1,000.00 + 3 x 0.10 = 1,000.30 + 10 % tax 100.03 =
1,100.33 USD each for November 2026 and one customer a EUR plan of 1,200.00 + 3 x 0.25 = 1,200.75
+ 10 % = 120.075 -> 120.08: 1,320.83 EUR. ll-jp bills two customers 150,000 + 3 x 0.5 = 1.5 -> 2:
150,002 + 10 % 15,000.2 -> 15,000: 165,002 JPY. Net 30 days; ageing as of 2027-04-15:

  USD  a finalized 2027-04-01, due 05-01: current                1,100.33
       b          2027-03-01, due 03-31: 15 days, paid 100.00    1,000.33  (1-30)
       c          2027-02-01, due 03-03: 43 days, credited 0.33  1,100.00  (31-60)
       d          2027-01-02, due 02-01: 73 days                 1,100.33  (61-90)
       e          2026-12-01, due 12-31: 105 days                1,100.33  (over 90)
       total                                                     5,401.32
  EUR  f          2027-04-01: current                            1,320.83
  JPY  g          2027-03-01: 15 days                             ¥165,002 (1-30)
       h          2027-04-10: current                             ¥165,002
       total                                                      ¥330,004
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing import histories, receivables, services
from billing.models import Contract, Invoice
from core.models import Customer, LegalEntity
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    currency,
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
AS_OF = date(2027, 4, 15)
pytestmark = pytest.mark.django_db


@dataclass
class Ageing:
    us: LegalEntity
    jp: LegalEntity
    inv: dict[str, Invoice]
    contracts: dict[str, Contract]


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def make_ageing(prefix: str = "ll") -> Ageing:
    """The world above; entities `<prefix>-us` and `<prefix>-jp`, plans `<prefix>-usd`, ..."""
    metric("api_calls")
    us = entity(f"{prefix}-us", "USD", 2, "UTC")
    jp = entity(f"{prefix}-jp", "JPY", 0, "UTC")
    tax_rate(us, "0.10")
    tax_rate(jp, "0.10")
    usd_plan = plan(
        f"{prefix}-usd",
        us.base_currency,
        [
            {"type": "fixed_fee", "code": "platform", "amount": "1000.00"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"},
        ],
    )
    eur_plan = plan(
        f"{prefix}-eur",
        currency("EUR", 2),
        [
            {"type": "fixed_fee", "code": "platform", "amount": "1200.00"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.25"},
        ],
    )
    jpy_plan = plan(
        f"{prefix}-jpy",
        jp.base_currency,
        [
            {"type": "fixed_fee", "code": "platform", "amount": "150000"},
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.5"},
        ],
    )
    contracts = {}
    for code, ent, p in [
        ("a", us, usd_plan),
        ("b", us, usd_plan),
        ("c", us, usd_plan),
        ("d", us, usd_plan),
        ("e", us, usd_plan),
        ("f", us, eur_plan),
        ("g", jp, jpy_plan),
        ("h", jp, jpy_plan),
    ]:
        cust = customer(ent, code)
        contracts[code] = contract(cust, p, date(2026, 10, 1))
        send(cust, "api_calls", datetime(2026, 11, 3, tzinfo=UTC), count=3)
    bill(us, "2026-11")
    bill(jp, "2026-11")
    finalized = {
        "a": date(2027, 4, 1),
        "b": date(2027, 3, 1),
        "c": date(2027, 2, 1),
        "d": date(2027, 1, 2),
        "e": date(2026, 12, 1),
        "f": date(2027, 4, 1),
        "g": date(2027, 3, 1),
        "h": date(2027, 4, 10),
    }
    inv = {}
    for code, day in sorted(finalized.items(), key=lambda kv: kv[1]):
        inv[code] = services.invoice_finalize(
            invoice=invoice_of(contracts[code]), actor=ACTOR, now=_at(day)
        )
    services.invoice_payment_record(
        invoice=inv["b"],
        amount=D("100.00"),
        received_on=date(2027, 3, 10),
        method="bank_transfer",
        reference="R-1",
        actor=ACTOR,
    )
    services.credit_memo_issue(
        invoice=inv["c"],
        reason="goodwill",
        actor=ACTOR,
        lines={inv["c"].lines.get(kind="usage").pk: D("0.30")},
    )
    return Ageing(us=us, jp=jp, inv=inv, contracts=contracts)


@pytest.fixture
def world() -> Ageing:
    return make_ageing()


def test_ageing_buckets_to_the_cent_per_currency(world: Ageing) -> None:
    assert world.inv["a"].total == D("1100.33") and world.inv["f"].total == D("1320.83")
    assert world.inv["g"].total == D("165002")
    us = receivables.ageing(entity=world.us, as_of=AS_OF)
    by_customer = {(r.customer.code, r.currency.code): r.buckets for r in us.rows if r.customer}
    zero = D("0")
    assert by_customer[("a", "USD")] == {
        "current": D("1100.33"),
        "d1_30": zero,
        "d31_60": zero,
        "d61_90": zero,
        "over_90": zero,
    }
    assert by_customer[("b", "USD")]["d1_30"] == D("1000.33")
    assert by_customer[("c", "USD")]["d31_60"] == D("1100.00")
    assert by_customer[("d", "USD")]["d61_90"] == D("1100.33")
    assert by_customer[("e", "USD")]["over_90"] == D("1100.33")
    totals = {t.currency.code: t for t in us.totals}
    assert sorted(totals) == ["EUR", "USD"]  # one total per currency, never one across them
    assert totals["USD"].total == D("5401.32") and totals["USD"].documents == 5
    assert totals["USD"].buckets == {
        "current": D("1100.33"),
        "d1_30": D("1000.33"),
        "d31_60": D("1100.00"),
        "d61_90": D("1100.33"),
        "over_90": D("1100.33"),
    }
    assert totals["EUR"].total == D("1320.83") and totals["EUR"].buckets["current"] == D("1320.83")
    jp = {t.currency.code: t for t in receivables.ageing(entity=world.jp, as_of=AS_OF).totals}
    assert jp["JPY"].total == D("330004")
    assert jp["JPY"].buckets["d1_30"] == D("165002") and jp["JPY"].buckets["current"] == D("165002")


def test_ageing_leaves_out_what_is_not_yet_issued_and_what_is_paid(world: Ageing) -> None:
    early = receivables.ageing(entity=world.us, as_of=date(2027, 1, 15))
    usd = {t.currency.code: t for t in early.totals}["USD"]
    # only d (issued 01-02, current) and e (issued 2026-12-01, due 12-31: 15 days) exist then
    assert usd.documents == 2 and usd.total == D("2200.66")
    assert usd.buckets["current"] == D("1100.33") and usd.buckets["d1_30"] == D("1100.33")
    services.invoice_payment_record(
        invoice=world.inv["e"],
        amount=D("1100.33"),
        received_on=date(2027, 1, 20),
        method="card",
        reference="",
        actor=ACTOR,
    )
    late = {t.currency.code: t for t in receivables.ageing(entity=world.us, as_of=AS_OF).totals}
    assert late["USD"].total == D("4300.99") and late["USD"].buckets["over_90"] == D("0")


def test_receivables_page_shows_amounts_per_currency_to_the_cent(
    client: Client, world: Ageing, clerk: User
) -> None:
    client.force_login(clerk)
    page = client.get("/billing/receivables/?legal_entity=ll-us&as_of=2027-04-15").content.decode()
    for amount in ("$1,100.33", "$1,000.33", "$1,100.00", "$5,401.32", "€1,320.83"):
        assert amount in page
    assert 'data-total="USD">$5,401.32' in page and 'data-total="EUR">€1,320.83' in page
    assert "6,722" not in page  # USD + EUR never added up
    jp = client.get("/billing/receivables/?legal_entity=ll-jp&as_of=2027-04-15").content.decode()
    assert 'data-total="JPY">¥330,004' in jp and "¥165,002" in jp
    bad = client.get("/billing/receivables/?legal_entity=ll-us&as_of=15.04.2027").content.decode()
    assert "is not a date (YYYY-MM-DD)" in bad
    assert client.get("/billing/receivables/?legal_entity=nope").status_code == 404


def test_customer_page_shows_contracts_documents_balance_usage_cases_and_mappings(
    client: Client, world: Ageing, auditor: User
) -> None:
    b = world.inv["b"].customer
    client.force_login(auditor)
    page = client.get(f"/billing/customers/{b.pk}/").content.decode()
    assert world.contracts["b"].code in page and "net 30 days" in page
    assert str(world.inv["b"].number) in page and "$1,100.33" in page and "$100.00" in page
    assert "$1,000.33" in page  # the balance due, on the document and in the balance table
    assert "ll-us-b" in page  # its identity mapping (source app)
    assert f'href="/billing/customers/{b.pk}/history/"' in page
    assert f'href="/billing/contracts/{world.contracts["b"].pk}/history/"' in page
    assert client.get("/billing/customers/999999/").status_code == 404


def test_customer_usage_this_period_is_counted_against_the_contract(
    auditor: User, client: Client
) -> None:
    metric("api_calls")
    us = entity("ll-us", "USD", 2, "UTC")
    cust = customer(us, "now")
    p = plan(
        "now",
        us.base_currency,
        [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}],
    )
    contract(cust, p, date(2026, 1, 1))
    now = datetime(2026, 12, 10, 9, tzinfo=UTC)
    send(cust, "api_calls", datetime(2026, 12, 2, tzinfo=UTC), count=4, now=now)
    send(cust, "api_calls", datetime(2026, 11, 30, tzinfo=UTC), count=2, now=now)  # last period
    overview = receivables.customer_overview(customer=cust, now=now)
    [line] = overview.usage
    assert (line.metric, line.events, line.quantity) == ("api_calls", 4, D("4"))
    assert (line.period_start, line.period_end) == (date(2026, 12, 1), date(2026, 12, 31))
    assert line.unit_price == D("0.10")


def test_pages_are_for_finance_roles_only(
    client: Client, world: Ageing, make_user: Callable[..., User]
) -> None:
    nobody = make_user("nobody")
    client.force_login(nobody)
    cust = world.inv["a"].customer_id
    for url in (
        f"/billing/customers/{cust}/",
        f"/billing/customers/{cust}/history/",
        "/billing/receivables/",
        "/billing/runs/history/",
    ):
        assert client.get(url).status_code == 403, url


def test_history_tabs_of_customer_contract_plan_and_run(
    client: Client, world: Ageing, approver: User
) -> None:
    c = world.contracts["c"]
    cust: Customer = c.customer
    rows = histories.customer_history(customer=cust)
    actions = [(r.action, r.via) for r in rows]
    assert ("mapping.create", f"mapping app:ll-us-{cust.code}") in actions
    assert ("contract.create", f"contract {c.code}") in actions
    assert any(a == "invoice.finalize" and v.startswith("invoice ") for a, v in actions)
    contract_rows = histories.contract_history(contract=c)
    kinds = [r.action for r in contract_rows]
    assert kinds[0] == "contract.create"
    drafted = [r for r in contract_rows if r.action == "billing_run.drafts_create"]
    assert len(drafted) == 1 and drafted[0].via.startswith("billing run")
    memo = [r for r in contract_rows if r.action == "credit_memo.issue"]
    assert len(memo) == 1 and memo[0].via.startswith("credit memo ")  # a document of the contract
    plan_rows = histories.price_plan_history(plan=c.plan)
    assert plan_rows[0].action == "price_plan.create"
    assert any(r.action == "contract.create" and r.via == f"contract {c.code}" for r in plan_rows)
    create = plan_rows[0]
    assert any(ch.field == "code" and ch.after == "ll-usd" for ch in create.changes)

    client.force_login(approver)
    page = client.get(f"/billing/contracts/{c.pk}/history/").content.decode()
    assert "contract.create" in page and "billing_run.drafts_create" in page
    assert client.get(f"/billing/plans/{c.plan_id}/history/").status_code == 200
    assert client.get("/billing/contracts/999999/history/").status_code == 404
    assert client.get("/billing/plans/999999/history/").status_code == 404
    run = world.inv["a"].billing_run
    assert run is not None
    detail = client.get(f"/billing/runs/{run.pk}/").content.decode()
    assert "billing_run.finish" in detail and str(world.inv["a"].number) in detail
    history_page = client.get("/billing/runs/history/").content.decode()
    assert f'href="/billing/runs/{run.pk}/"' in history_page and "Done" in history_page
    assert client.get("/billing/runs/999999/").status_code == 404


def test_event_history_names_the_summary_and_the_document(
    client: Client, world: Ageing, auditor: User
) -> None:
    from metering.for_billing import UsageEvent

    event = UsageEvent.objects.filter(customer=world.inv["a"].customer).first()
    assert event is not None
    rows = histories.event_history(event=event)
    actions = [r.action for r in rows]
    assert "usage.summarize" in actions
    assert any(
        r.action == "invoice.finalize" and (world.inv["a"].number or "?") in r.via for r in rows
    )
    client.force_login(auditor)
    page = client.get(f"/billing/events/{event.seq}/history/").content.decode()
    assert "usage.summarize" in page and event.event_id in page
    assert client.get("/billing/events/99999999/history/").status_code == 404


def test_customer_and_contract_history_show_the_batch_that_finalized_their_invoice() -> None:
    from exceptions.history import FieldChange
    from tests.billing.test_money_pages import make_world

    w = make_world()
    services.invoices_finalize(invoice_ids=[w.usd.pk, w.eur.pk], actor=ACTOR)
    w.usd.refresh_from_db()
    w.eur.refresh_from_db()
    for rows in (
        histories.customer_history(customer=w.usd.customer),
        histories.contract_history(contract=w.usd.contract),
    ):
        [batch] = [r for r in rows if r.action == "invoices.finalize"]
        assert batch.via == "batch: 2 invoice(s)"
        assert FieldChange("number", "—", w.usd.number or "") in batch.changes
        # the other document's number is not shown (both entities number INV-2026-000001)
        assert [c.field for c in batch.changes if c.field.startswith("number")] == ["number"]
