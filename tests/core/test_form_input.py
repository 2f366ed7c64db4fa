"""Hostile values in the fields of every state-changing page form (issue 12, item 3): non-ASCII
digits as an id, NaN, Infinity, 1e30 or 5,000 digits as an amount, NUL or 100,000 characters
in a reason. Each is a 400 that names the field, never a 500, and nothing is changed."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing.models import ActionKey, BillingRun, Invoice, Payment
from core import roles
from core.form_input import FormInputError, form_amount, form_date, form_id, form_ids, form_text
from exceptions.models import AuditEntry, CaseComment, CaseProposal, ExceptionCase
from tests.exceptions.conftest import finalized_invoice

pytestmark = pytest.mark.django_db

HOSTILE_AMOUNTS = ["NaN", "Infinity", "-Infinity", "1e30", "9" * 5000, "²", "\u0661\u0662"]
HOSTILE_IDS = ["²", "\u0661", "9" * 30, "-1"]
HOSTILE_TEXTS = ["void\x00", "x" * 100_000]
HOSTILE_DATES = ["2026-13-45", "²⁰²⁶-¹¹-⁰¹", "9" * 5000]


def state() -> tuple[Any, ...]:
    """Everything a form here could change."""
    return (
        list(Invoice.objects.order_by("pk").values_list("pk", "status", "paid_at", "void_reason")),
        Payment.objects.count(),
        ActionKey.objects.count(),
        BillingRun.objects.count(),
        list(ExceptionCase.objects.order_by("pk").values_list("pk", "status", "version")),
        CaseProposal.objects.count(),
        CaseComment.objects.count(),
        AuditEntry.objects.count(),
    )


@pytest.fixture
def invoice() -> Invoice:
    invoice: Invoice = finalized_invoice()
    return invoice


@pytest.fixture
def boss(make_user: Callable[..., User]) -> User:
    """Every role, so each form is refused for its value, not for who sent it."""
    return make_user(
        "boss",
        roles.FINANCE_APPROVER,
        roles.FINANCE_CLERK,
        roles.INTEGRATION_ADMIN,
    )


@pytest.fixture
def dispute(invoice: Invoice, boss: User) -> ExceptionCase:
    from exceptions.workbench.disputes import dispute_open
    from exceptions.workbench.services import Caller

    line = invoice.lines.get(kind="usage")
    return dispute_open(
        invoice_id=invoice.pk, line_id=line.pk, comment="two calls", caller=Caller.for_user(boss)
    )


def _forms(
    invoice: Invoice, case: ExceptionCase | None
) -> list[tuple[str, dict[str, str], str, list[str]]]:
    """(url, a valid body, the field made hostile, its hostile values) of every form."""
    pk = invoice.pk
    line = invoice.lines.get(kind="usage").pk
    token = {"idempotency_key": "t" * 32}
    void = {"reason": "wrong customer", "confirmed": "1", **token}
    paid = {"amount": "1.00", "received_on": "2026-12-01", "method": "card", "reference": "r"}
    paid |= token
    credit = {f"line_{line}": "1.00", "reason": "sorry", **token}
    forms = [
        (f"/billing/invoices/{pk}/void/", void, "reason", HOSTILE_TEXTS),
        (f"/billing/invoices/{pk}/paid/", paid, "amount", HOSTILE_AMOUNTS),
        (f"/billing/invoices/{pk}/paid/", paid, "received_on", HOSTILE_DATES),
        (f"/billing/invoices/{pk}/paid/", paid, "reference", HOSTILE_TEXTS),
        (f"/billing/invoices/{pk}/credit/", credit, f"line_{line}", HOSTILE_AMOUNTS),
        (f"/billing/invoices/{pk}/credit/", credit, "reason", HOSTILE_TEXTS),
        (
            f"/exceptions/invoices/{pk}/credit/",
            credit | {"confirmed": "1"},
            f"line_{line}",
            HOSTILE_AMOUNTS,
        ),
        (
            f"/exceptions/invoices/{pk}/credit/",
            credit | {"confirmed": "1"},
            "reason",
            HOSTILE_TEXTS,
        ),
        ("/billing/invoices/finalize/", {"invoice": str(pk), **token}, "invoice", HOSTILE_IDS),
        (f"/billing/invoices/{pk}/void/", void, "idempotency_key", ["", "k" * 101]),
        (
            "/erp/reconciliation/run/",
            {"entity": "ll-us", "period": "2026-11"},
            "period",
            HOSTILE_TEXTS + ["x"],
        ),
        (
            "/erp/reconciliation/run/",
            {"entity": "ll-us", "period": "2026-11"},
            "entity",
            HOSTILE_TEXTS,
        ),
        (
            "/billing/runs/start/",
            {"entity": "ll-us", "period": "2026-12", **token},
            "period",
            HOSTILE_TEXTS + ["²⁰²⁶-¹²"],
        ),
        (
            "/billing/runs/start/",
            {"entity": "ll-us", "period": "2026-12", **token},
            "entity",
            HOSTILE_TEXTS,
        ),
        (
            "/exceptions/disputes/new/",
            {"invoice": str(pk), "line": str(line), "comment": "c"},
            "line",
            HOSTILE_IDS,
        ),
        (
            "/exceptions/disputes/new/",
            {"invoice": str(pk), "line": str(line), "comment": "c"},
            "comment",
            HOSTILE_TEXTS,
        ),
        (
            "/exceptions/policies/",
            {"kind": "customer_dispute", "high_amount": "10", "due_hours": "24"},
            "high_amount",
            HOSTILE_AMOUNTS,
        ),
        (
            "/exceptions/policies/",
            {"kind": "customer_dispute", "high_amount": "10", "due_hours": "24"},
            "due_hours",
            HOSTILE_IDS,
        ),
    ]
    if case is not None:
        c = case.pk
        v = str(case.version)
        reverse = {
            "version": v,
            "amount": "1.00",
            "reason_code": "customer_dispute",
            "comment": "x",
        }
        forms += [
            (f"/exceptions/cases/{c}/reverse/", reverse, "amount", HOSTILE_AMOUNTS),
            (f"/exceptions/cases/{c}/reverse/", reverse, "comment", HOSTILE_TEXTS),
            (f"/exceptions/cases/{c}/reverse/", reverse, "version", HOSTILE_IDS),
            (f"/exceptions/cases/{c}/comment/", {"body": "ok"}, "body", HOSTILE_TEXTS),
            (
                f"/exceptions/cases/{c}/dismiss/",
                {"version": v, "reason_code": "duplicate_case", "comment": "x"},
                "comment",
                HOSTILE_TEXTS,
            ),
            ("/exceptions/bulk/", {"case": str(c), "action": "retry"}, "case", HOSTILE_IDS),
            (
                "/exceptions/bulk/",
                {
                    "case": str(c),
                    "action": "dismiss",
                    "reason_code": "duplicate_case",
                    "comment": "x",
                },
                "comment",
                HOSTILE_TEXTS,
            ),
        ]
    return forms


def test_every_hostile_value_of_every_form_is_a_400_naming_the_field_and_changes_nothing(
    invoice: Invoice, dispute: ExceptionCase, boss: User
) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(boss)
    before = state()
    failures: list[tuple[object, ...]] = []
    for url, body, field, values in _forms(invoice, dispute):
        for value in values:
            resp = client.post(url, body | {field: value})
            text = resp.content.decode(errors="replace")
            shown = field.split("_")[0] if field.startswith("line_") else field
            if resp.status_code != 400 or shown not in text:
                failures.append((url, field, value[:12], resp.status_code, text[-120:]))
            elif state() != before:
                failures.append((url, field, value[:12], "changed something"))
    assert not failures, "\n".join(map(str, failures))


def test_the_helpers_take_what_a_person_types() -> None:
    data = {"amount": " 1,234.50 ", "id": "42", "day": "2026-12-01", "text": " why "}
    assert form_amount(data, "amount") == Decimal("1234.50")
    assert form_amount({"amount": ".5"}, "amount") == Decimal("0.5")
    assert form_amount({"amount": "-3"}, "amount") == Decimal(-3)
    assert form_amount({}, "amount", required=False) is None
    assert form_id(data, "id") == 42
    assert form_text(data, "text") == "why"
    assert str(form_date(data, "day")) == "2026-12-01"
    from django.http import QueryDict

    assert form_ids(QueryDict("c=1&c=2&c="), "c") == [1, 2]
    for bad in HOSTILE_AMOUNTS + ["1.00001", "100000000000000", ".", "1.2.3"]:
        with pytest.raises(FormInputError) as refused:
            form_amount({"amount": bad}, "amount", label="Amount")
        assert refused.value.status_code == 400 and refused.value.extra == {"field": "amount"}
    assert form_amount({"amount": "9999999999999.9999"}, "amount") is not None
    for bad in HOSTILE_IDS + ["0", str(2**63)]:
        with pytest.raises(FormInputError):
            form_id({"id": bad}, "id")
    assert form_id({"id": str(2**63 - 1)}, "id") == 2**63 - 1


def test_a_non_ascii_id_in_a_page_parameter_is_a_400(boss: User) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(boss)
    resp = client.get("/erp/reconciliation/", {"run": "²"})
    assert resp.status_code == 400 and "run" in resp.content.decode()


def test_the_case_api_reads_its_fields_through_the_same_helper(
    dispute: ExceptionCase,
    make_api_key: Callable[..., Any],
    api_client: Callable[[str], Any],
) -> None:
    """The page and the API share the dispatcher: a hostile amount or comment is a 400
    `invalid_input` naming the field there too."""
    client = api_client(make_api_key("admin").raw_key)
    before = state()
    url = f"/api/v1/exception-cases/{dispute.pk}/actions/reverse"
    for field, value in [("amount", "NaN"), ("amount", "1e30"), ("comment", "x" * 100_000)]:
        body = {"version": dispute.version, "reason_code": "customer_dispute", "comment": "c"}
        resp = client.post(url, body | {field: value}, format="json")
        assert resp.status_code == 400, (field, resp.status_code)
        assert resp.json()["code"] == "invalid_input" and resp.json()["extra"] == {"field": field}
    assert state() == before
