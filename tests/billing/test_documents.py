"""Finalize, numbering, immutability, void, credit memos and late-usage corrections."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import services
from billing.models import BillingRun, Contract, FinanceEvent, Invoice, InvoiceLine, InvoiceTaxLine
from core.errors import AppError
from core.models import LegalEntity
from exceptions.models import AuditEntry
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    lines,
    metric,
    plan,
    send,
    tax_rate,
)
from tests.conftest import requires_postgres

D = Decimal
pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)


def _world(
    n_customers: int = 1, components: list[dict[str, Any]] | None = None, rate: str | None = "0.10"
) -> tuple[LegalEntity, BillingRun, list[Contract]]:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    if rate:
        tax_rate(us, rate, name="VAT")
    p = plan(
        "basic",
        us.base_currency,
        components
        or [
            {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"},
            {"type": "fixed_fee", "code": "platform", "amount": "20.00"},
        ],
    )
    contracts = []
    for i in range(n_customers):
        cust = customer(us, f"cust{i}")
        contracts.append(contract(cust, p, date(2026, 10, 1)))
        send(cust, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=100 + i)
    run = bill(us, "2026-11")
    return us, run, contracts


def test_finalize_numbers_are_gapless_per_entity_and_year_even_when_a_transaction_rolls_back() -> (
    None
):
    us, run, cs = _world(3)
    a, b, c = (invoice_of(x) for x in cs)
    assert services.invoice_finalize(invoice=a, actor=ACTOR, now=NOW).number == "INV-2026-000001"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        services.invoice_finalize(invoice=b, actor=ACTOR, now=NOW)
        raise Boom
    b.refresh_from_db()
    assert b.status == "draft" and b.number is None
    assert not FinanceEvent.objects.filter(payload__document__id=b.pk).exists()
    assert services.invoice_finalize(invoice=c, actor=ACTOR, now=NOW).number == "INV-2026-000002"
    assert services.invoice_finalize(invoice=b, actor=ACTOR, now=NOW).number == "INV-2026-000003"
    # a new year starts again at 1
    other = entity("ll-eu", "EUR", 2, "UTC")
    assert other  # another entity has its own counter (checked in the run test below)


def test_finalize_all_drafts_of_a_run_numbers_each_once_and_records_one_event_each() -> None:
    us, run, cs = _world(4)
    done = services.billing_run_finalize(run=run, actor=ACTOR)
    numbers = sorted(i.number or "" for i in done)
    assert done[0].issue_date is not None
    assert numbers == [f"INV-{done[0].issue_date.year}-00000{n}" for n in range(1, 5)]
    assert FinanceEvent.objects.filter(type="invoice.finalized").count() == 4
    ids = list(FinanceEvent.objects.values_list("id", flat=True))
    assert ids == sorted(ids)
    assert AuditEntry.objects.filter(action="invoices.finalize").count() == 1
    assert (
        services.billing_run_finalize(run=run, actor=ACTOR) == []
    )  # nothing left: no second number


def test_finalized_invoice_is_refused_by_the_services() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    with pytest.raises(AppError) as exc:
        services.invoice_finalize(invoice=inv, actor=ACTOR)
    assert exc.value.code == "billing_invoice_not_draft"


@requires_postgres
def test_postgres_refuses_edits_and_deletes_of_finalized_documents() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    line = inv.lines.first()
    assert line is not None
    for statement in (
        lambda: Invoice.objects.filter(pk=inv.pk).update(
            total=D("1.00"), subtotal=D("1.00"), tax_total=0
        ),
        lambda: Invoice.objects.filter(pk=inv.pk).update(number="INV-X"),
        lambda: Invoice.objects.filter(pk=inv.pk).delete(),
        lambda: InvoiceLine.objects.filter(pk=line.pk).update(amount=D("0.01")),
        lambda: InvoiceLine.objects.filter(pk=line.pk).delete(),
        lambda: InvoiceLine.objects.create(
            invoice=inv,
            position=99,
            kind="usage",
            description="sneaked in",
            quantity=1,
            amount=D("5.00"),
            service_start=date(2026, 11, 1),
            service_end=date(2026, 12, 1),
        ),
        lambda: InvoiceTaxLine.objects.filter(invoice=inv).update(amount=D("0.00")),
        lambda: Invoice.objects.filter(pk=inv.pk).update(
            status="draft", number=None, issue_date=None
        ),
        lambda: FinanceEvent.objects.filter(payload__document__id=inv.pk).update(type="x"),
        lambda: FinanceEvent.objects.filter(payload__document__id=inv.pk).delete(),
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            statement()
    # the allowed transitions still work
    assert Invoice.objects.filter(pk=inv.pk).update(status="paid", paid_at=NOW) == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=inv.pk).update(status="finalized")


@requires_postgres
def test_postgres_moves_void_paid_and_credited_fields_only_with_their_transition() -> None:
    us, run, (a, b) = _world(2)
    inv = services.invoice_finalize(invoice=invoice_of(a), actor=ACTOR)
    other = services.invoice_finalize(invoice=invoice_of(b), actor=ACTOR)
    rows = Invoice.objects.filter(pk=inv.pk)

    def refused(statement: Callable[[], object]) -> None:
        with pytest.raises(IntegrityError), transaction.atomic():
            statement()

    # finalized: no void or payment fields without the transition, no credit without a memo
    refused(lambda: rows.update(voided_at=NOW))
    refused(lambda: rows.update(void_reason="quietly"))
    refused(lambda: rows.update(paid_at=NOW))
    refused(lambda: rows.update(status="paid", paid_at=NOW, voided_at=NOW))
    refused(lambda: rows.update(credited_total=D("0.10")))
    # a credit memo's amount, and only that, may be recorded on the original
    memo = services.credit_memo_issue(
        invoice=inv,
        reason="goodwill",
        actor=ACTOR,
        lines={inv.lines.get(kind="usage").pk: D("0.10")},
    )
    inv.refresh_from_db()
    assert inv.credited_total == -memo.total == D("0.11")  # 0.10 and its 10 % tax
    refused(lambda: rows.update(credited_total=D("0.20")))
    # paid: paid_at is set with the transition, then frozen
    assert rows.update(status="paid", paid_at=NOW) == 1
    refused(lambda: rows.update(paid_at=NOW + timedelta(days=1)))
    refused(lambda: rows.update(paid_at=None))
    # void: reason and time come with the transition, then are frozen
    voided = services.invoice_void(invoice=other, reason="wrong customer", actor=ACTOR)
    again = Invoice.objects.filter(pk=voided.pk)
    refused(lambda: again.update(void_reason="another story"))
    refused(lambda: again.update(voided_at=NOW))
    refused(lambda: again.update(paid_at=NOW))
    voided.refresh_from_db()
    assert voided.void_reason == "wrong customer"


def test_void_before_payment_records_an_event_and_one_audit_entry() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    voided = services.invoice_void(invoice=inv, reason="wrong customer", actor=ACTOR)
    assert voided.status == "void" and voided.number == inv.number
    event = FinanceEvent.objects.get(type="invoice.voided")
    assert event.payload["document"]["number"] == inv.number
    assert AuditEntry.objects.filter(action="invoice.void", object_id=str(inv.pk)).count() == 1
    with pytest.raises(AppError) as exc:
        services.invoice_void(invoice=inv, reason="again", actor=ACTOR)
    assert exc.value.code == "billing_invoice_void"


def test_paid_invoices_are_not_voided_but_credited() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    services.invoice_mark_paid(invoice=inv, actor=ACTOR)
    with pytest.raises(AppError) as exc:
        services.invoice_void(invoice=inv, reason="x", actor=ACTOR)
    assert exc.value.code == "billing_invoice_paid"
    memo = services.credit_memo_issue(invoice=inv, reason="goodwill", actor=ACTOR)
    assert memo.total == -inv.total


def test_whole_credit_memo_mirrors_every_line_and_tax() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR, now=NOW)
    # 100 x 0.10 = 10.00 + December fee 20.00 = 30.00; VAT 10 % = 3.00
    assert (inv.subtotal, inv.tax_total, inv.total) == (D("30.00"), D("3.00"), D("33.00"))
    memo = services.credit_memo_issue(invoice=inv, reason="cancelled", actor=ACTOR, now=NOW)
    assert (
        memo.kind == "credit_memo" and memo.number == "CN-2026-000001" and memo.credits_id == inv.pk
    )
    assert lines(memo) == [("usage", "api", D("-10.00")), ("fixed_fee", "platform", D("-20.00"))]
    assert (memo.tax_total, memo.total) == (D("-3.00"), D("-33.00"))
    inv.refresh_from_db()
    assert inv.credited_total == D("33.00")
    event = FinanceEvent.objects.get(type="credit_memo.issued")
    assert event.payload["document"]["credits_number"] == inv.number
    assert AuditEntry.objects.filter(action="credit_memo.issue").count() == 1
    with pytest.raises(AppError) as exc:
        services.credit_memo_issue(invoice=inv, reason="twice", actor=ACTOR)
    assert exc.value.code == "billing_credit_exceeds"


def test_credit_memo_per_line_never_exceeds_the_line() -> None:
    us, run, (c,) = _world()
    inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    usage = inv.lines.get(kind="usage")
    memo = services.credit_memo_issue(
        invoice=inv, reason="outage", actor=ACTOR, lines={usage.pk: D("4.00")}
    )
    # -4.00 and its VAT -0.40
    assert (memo.subtotal, memo.tax_total, memo.total) == (D("-4.00"), D("-0.40"), D("-4.40"))
    usage.refresh_from_db()
    assert usage.credited_amount == D("4.00")
    with pytest.raises(AppError) as exc:
        services.credit_memo_issue(
            invoice=inv, reason="more", actor=ACTOR, lines={usage.pk: D("6.01")}
        )
    assert exc.value.code == "billing_credit_exceeds" and exc.value.extra["creditable"] == "6.0000"
    services.credit_memo_issue(invoice=inv, reason="rest", actor=ACTOR, lines={usage.pk: D("6.00")})
    with pytest.raises(AppError) as exc:
        services.credit_memo_issue(invoice=inv, reason="whole", actor=ACTOR)
    assert exc.value.code == "billing_credit_exceeds"
    with pytest.raises(AppError) as exc:
        services.credit_memo_issue(
            invoice=inv, reason="odd", actor=ACTOR, lines={usage.pk: D("0.001")}
        )
    assert exc.value.code == "billing_credit_empty"
    assert Invoice.objects.filter(kind="credit_memo").count() == 2


def test_database_refuses_a_credit_beyond_the_line_or_the_invoice() -> None:
    us, run, (c,) = _world()
    inv = invoice_of(c)
    line = inv.lines.get(kind="usage")
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.filter(pk=line.pk).update(credited_amount=line.amount + D("0.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=inv.pk).update(credited_total=inv.total + D("0.01"))


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(
        st.tuples(st.sampled_from(["usage", "fixed_fee"]), st.integers(1, 2500)),
        min_size=1,
        max_size=6,
    )
)
def test_property_credit_memos_never_exceed_what_they_credit(
    requests: list[tuple[str, int]],
) -> None:
    with transaction.atomic():
        us, run, (c,) = _world()
        inv = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
        for kind, cents in requests:
            line = inv.lines.get(kind=kind)
            try:
                services.credit_memo_issue(
                    invoice=inv, reason="p", actor=ACTOR, lines={line.pk: D(cents) / 100}
                )
            except AppError as exc:
                assert exc.code == "billing_credit_exceeds"
            inv.refresh_from_db()
            assert 0 <= inv.credited_total <= inv.total
            for ln in inv.lines.all():
                assert 0 <= ln.credited_amount <= ln.amount
            credited = -sum((m.total for m in Invoice.objects.filter(credits=inv)), D(0))
            assert credited == inv.credited_total
        transaction.set_rollback(True)


def test_late_usage_for_a_closed_period_becomes_an_adjustment_invoice_in_the_next_run() -> None:
    us, run, (c,) = _world(rate=None)
    original = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    cust = c.customer
    # 7 more calls on 30 Nov arrive in December, after November was invoiced
    send(
        cust,
        "api_calls",
        datetime(2026, 11, 30, 12, tzinfo=UTC),
        count=7,
        now=datetime(2026, 12, 5, tzinfo=UTC),
    )
    bill(us, "2026-12")
    adj = Invoice.objects.get(kind="adjustment")
    assert adj.credits_id == original.pk and adj.period_start == date(2026, 11, 1)
    # 7 x 0.10 = 0.70
    assert lines(adj) == [("usage", "api", D("0.70"))]
    summary = adj.lines.get().usage_summary
    assert summary is not None
    assert summary.revision == 1 and summary.event_count == 107
    bill(us, "2026-12")  # the rerun makes no second adjustment
    assert Invoice.objects.filter(kind="adjustment").count() == 1
    final = services.invoice_finalize(invoice=adj, actor=ACTOR)
    assert final.number is not None and final.number.startswith("INV-")
    assert FinanceEvent.objects.filter(
        type="invoice.finalized", payload__document__credits_id=original.pk
    ).exists()


def test_late_usage_that_lowers_a_volume_charge_becomes_a_credit_memo() -> None:
    volume = [
        {
            "type": "volume",
            "code": "api",
            "metric": "api_calls",
            "tiers": [
                {"up_to": "100", "unit_price": "1.00"},
                {"up_to": None, "unit_price": "0.50"},
            ],
        }
    ]
    us, run, (c,) = _world(components=volume, rate=None)
    original = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    assert original.total == D("100.00")  # 100 x 1.00
    send(
        c.customer,
        "api_calls",
        datetime(2026, 11, 20, tzinfo=UTC),
        count=10,
        now=datetime(2026, 12, 2, tzinfo=UTC),
    )
    bill(us, "2026-12")
    memo = Invoice.objects.get(kind="credit_memo")
    # 110 x 0.50 = 55.00, 45.00 less than billed
    assert lines(memo) == [("usage", "api", D("-45.00"))]
    assert memo.lines.get().credits_line == original.lines.get()
    services.invoice_finalize(invoice=memo, actor=ACTOR)
    original.refresh_from_db()
    assert original.credited_total == D("45.00")
    assert FinanceEvent.objects.filter(type="credit_memo.issued").count() == 1


def test_prepaid_credit_is_drawn_down_before_the_rest_is_invoiced() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(
        cust,
        plan(
            "basic",
            us.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"}],
        ),
        date(2026, 10, 1),
        prepaid_balance=D("30.00"),
    )
    send(cust, "api_calls", datetime(2026, 11, 2, tzinfo=UTC), count=20)
    bill(us, "2026-11")
    assert lines(invoice_of(c)) == [
        ("usage", "api", D("20.00")),
        ("credit_drawdown", "", D("-20.00")),
    ]
    c.refresh_from_db()
    assert c.prepaid_balance == D("10.00")
    send(cust, "api_calls", datetime(2026, 12, 2, tzinfo=UTC), count=25)
    bill(us, "2026-12")
    dec = invoice_of(c, period_start=date(2026, 12, 1))
    assert dec.total == D("15.00")


def test_a_draft_whose_usage_moved_is_rated_again_when_finalized() -> None:
    from metering.services import usage_summaries_refresh

    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    metric("storage", aggregation="sum", value_property="gb")
    cust = customer(us, "acme")
    c = contract(
        cust,
        plan(
            "two",
            us.base_currency,
            [
                {"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"},
                {"type": "per_unit", "code": "gb", "metric": "storage", "unit_price": "1.00"},
            ],
        ),
        date(2026, 10, 1),
        prepaid_balance=D("0.50"),
    )
    send(cust, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=10)
    bill(us, "2026-11")
    draft = invoice_of(c)
    assert lines(draft) == [
        ("usage", "api", D("1.00")),
        ("usage", "gb", D("0.00")),
        ("credit_drawdown", "", D("-0.50")),
    ]
    # more usage of both metrics arrives before anyone finalizes; metering's refresh updates the open summary
    send(
        cust,
        "api_calls",
        datetime(2026, 11, 29, tzinfo=UTC),
        count=5,
        now=datetime(2026, 12, 1, 13, tzinfo=UTC),
    )
    send(
        cust,
        "storage",
        datetime(2026, 11, 29, tzinfo=UTC),
        value="3",
        now=datetime(2026, 12, 1, 13, tzinfo=UTC),
    )
    usage_summaries_refresh(actor=ACTOR)
    final = services.invoice_finalize(invoice=draft, actor=ACTOR)
    # 15 x 0.10 = 1.50; 3 GB x 1.00 = 3.00; the same 0.50 prepaid credit, not drawn twice
    assert lines(final) == [
        ("usage", "api", D("1.50")),
        ("usage", "gb", D("3.00")),
        ("credit_drawdown", "", D("-0.50")),
    ]
    assert final.total == D("4.00")
    c.refresh_from_db()
    assert c.prepaid_balance == 0
    for line in final.lines.filter(kind="usage"):
        assert line.usage_summary is not None
        assert line.usage_summary.closed_at is not None
        assert line.usage_summary.quantity == line.rated_quantity
    assert AuditEntry.objects.filter(action="invoices.redraft").count() == 1
    event = FinanceEvent.objects.get(type="invoice.finalized")
    assert event.payload["document"]["total"] == "4.00"


def test_a_correction_whose_usage_moved_is_rebuilt_by_the_next_run_not_finalized_stale() -> None:
    from metering.services import usage_summaries_refresh

    us, run, (c,) = _world(rate=None)
    original = services.invoice_finalize(invoice=invoice_of(c), actor=ACTOR)
    send(
        c.customer,
        "api_calls",
        datetime(2026, 11, 30, tzinfo=UTC),
        count=7,
        now=datetime(2026, 12, 5, tzinfo=UTC),
    )
    bill(us, "2026-12")
    adj = Invoice.objects.get(kind="adjustment")
    assert adj.total == D("0.70")
    # three more late calls arrive and metering refreshes the open revision before anyone finalizes
    send(
        c.customer,
        "api_calls",
        datetime(2026, 11, 30, tzinfo=UTC),
        count=3,
        now=datetime(2026, 12, 6, tzinfo=UTC),
    )
    usage_summaries_refresh(actor=ACTOR)
    with pytest.raises(AppError) as exc:
        services.invoice_finalize(invoice=adj, actor=ACTOR)
    assert exc.value.code == "billing_usage_changed"
    dec_run = Invoice.objects.get(pk=adj.pk).billing_run
    assert dec_run is not None
    assert (
        services.billing_run_finalize(run=dec_run, actor=ACTOR) != []
    )  # the December invoice, not the stale fix
    assert Invoice.objects.get(pk=adj.pk).status == "draft"
    bill(us, "2026-12")  # the rerun rebuilds it from the summary as it is now
    [rebuilt] = Invoice.objects.filter(kind="adjustment")
    assert rebuilt.pk != adj.pk and rebuilt.total == D("1.00")  # 10 x 0.10
    final = services.invoice_finalize(invoice=rebuilt, actor=ACTOR)
    summary = final.lines.get().usage_summary
    assert (
        summary is not None
        and summary.event_count == 110
        and summary.closed_at is not None
        and summary.quantity == D("110")
    )
    assert final.credits_id == original.pk


def test_finalizing_a_run_re_rates_every_moved_draft_and_keeps_prepaid_balances_right() -> None:
    from metering.services import usage_summaries_refresh

    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    p = plan(
        "basic",
        us.base_currency,
        [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "1.00"}],
    )
    custs = [customer(us, f"c{i}") for i in range(3)]
    cs = [contract(cust, p, date(2026, 10, 1), prepaid_balance=D("5.00")) for cust in custs]
    for cust in custs:
        send(cust, "api_calls", datetime(2026, 11, 10, tzinfo=UTC), count=2)
    run = bill(us, "2026-11")
    for cust in custs[:2]:  # two of the three get more November usage before finalize
        send(
            cust,
            "api_calls",
            datetime(2026, 11, 30, tzinfo=UTC),
            count=4,
            now=datetime(2026, 12, 1, 13, tzinfo=UTC),
        )
    usage_summaries_refresh(actor=ACTOR)
    done = services.billing_run_finalize(run=run, actor=ACTOR)
    assert len(done) == 3
    # moved: 6 x 1.00 = 6.00, 5.00 prepaid drawn, 1.00 due; unmoved: 2.00, all prepaid
    assert [invoice_of(c).total for c in cs] == [D("1.00"), D("1.00"), D("0.00")]
    for c in cs:
        c.refresh_from_db()
    assert [c.prepaid_balance for c in cs] == [D("0"), D("0"), D("3.00")]
