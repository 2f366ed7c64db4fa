"""A state-changing request carried twice (double submit, retry, two at once) is applied once."""

from __future__ import annotations

from core import roles

import re
from collections.abc import Callable
import threading
from datetime import date
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
import pytest
from django.db import connections

from billing import services
from billing.models import ActionKey, Invoice
from core.errors import AppError, Conflict
from tests.billing.conftest import ACTOR, API_PER_CALL, one_draft
from tests.conftest import requires_postgres

D = Decimal


def _finalized() -> Invoice:
    return services.invoice_finalize(invoice=one_draft(events=5), actor=ACTOR)


@pytest.mark.django_db
def test_a_key_applies_its_action_once_and_the_second_answer_says_so() -> None:
    inv = _finalized()
    line = inv.lines.get(kind="usage")  # 5 x 0.10 = 0.50
    memo = services.credit_memo_issue(
        invoice=inv, reason="sorry", actor=ACTOR, lines={line.pk: D("0.10")}, idempotency_key="k1"
    )
    with pytest.raises(Conflict) as again:
        services.credit_memo_issue(
            invoice=inv,
            reason="sorry",
            actor=ACTOR,
            lines={line.pk: D("0.10")},
            idempotency_key="k1",
        )
    assert again.value.code == "billing_already_applied"
    assert again.value.extra["result_number"] == memo.number
    assert memo.number is not None and memo.number in again.value.message
    assert Invoice.objects.filter(kind="credit_memo").count() == 1
    line.refresh_from_db()
    assert line.credited_amount == D("0.10")
    # a refused attempt leaves its key unused: the corrected request with the same key goes through
    with pytest.raises(AppError) as exceeds:
        services.credit_memo_issue(
            invoice=inv,
            reason="more",
            actor=ACTOR,
            lines={line.pk: D("9.00")},
            idempotency_key="k2",
        )
    assert exceeds.value.code == "billing_credit_exceeds"
    assert not ActionKey.objects.filter(key="k2").exists()
    services.credit_memo_issue(
        invoice=inv, reason="more", actor=ACTOR, lines={line.pk: D("0.20")}, idempotency_key="k2"
    )
    services.invoice_mark_paid(invoice=inv, actor=ACTOR, idempotency_key="k3")
    with pytest.raises(Conflict) as paid_twice:
        services.invoice_mark_paid(invoice=inv, actor=ACTOR, idempotency_key="k3")
    assert paid_twice.value.code == "billing_already_applied"
    with pytest.raises(AppError) as bad:
        services.invoice_mark_paid(invoice=inv, actor=ACTOR, idempotency_key="x" * 101)
    assert bad.value.code == "billing_invalid_idempotency_key"


@pytest.mark.django_db
def test_the_credit_form_submitted_twice_issues_one_credit_memo(
    client: Client, approver: User, make_user: Callable[..., User]
) -> None:
    inv = _finalized()
    line = inv.lines.get(kind="usage")
    client.force_login(approver)
    page = client.get(f"/billing/invoices/{inv.pk}/").content.decode()
    form = page[page.index("billing/invoices/%d/credit/" % inv.pk) :]
    found = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', form)
    assert found is not None
    token = found.group(1)
    body = {f"line_{line.pk}": "0.10", "reason": "sorry", "idempotency_key": token}
    body["confirmed"] = "1"  # the confirmation page re-posts the same fields with this
    # ... to the exception queue, which proposes the memo (four eyes): twice, one proposal
    url = f"/exceptions/invoices/{inv.pk}/credit/"
    client.post(url, body, follow=True)
    client.post(url, body, follow=True)
    from exceptions.models import CaseProposal, ExceptionCase

    (case,) = ExceptionCase.objects.filter(kind="credit_request")
    assert CaseProposal.objects.filter(case=case).count() == 1
    client.force_login(make_user("approver2", roles.FINANCE_APPROVER))
    first = client.post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    ).content.decode()
    second = client.post(
        f"/exceptions/cases/{case.pk}/approve/", {"version": case.version}, follow=True
    ).content.decode()
    memo = Invoice.objects.get(kind="credit_memo")
    assert memo.number is not None
    assert f"Credit memo {memo.number} issued" in first
    assert "case_stale" in second or "no_pending_proposal" in second
    # the page after it carries fresh tokens: a deliberate second credit is a new request
    fresh = client.get(f"/billing/invoices/{inv.pk}/").content.decode()
    assert token not in fresh


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_credit_memo_submitted_twice_at_once_is_issued_once() -> None:
    inv = _finalized()
    line = inv.lines.get(kind="usage")
    submits = 3
    barrier = threading.Barrier(submits)
    answers: list[object] = []

    def submit() -> None:
        try:
            barrier.wait()
            memo = services.credit_memo_issue(
                invoice=inv,
                reason="sorry",
                actor=ACTOR,
                lines={line.pk: D("0.10")},
                idempotency_key="form-token-1",
            )
            answers.append(memo.number)
        except AppError as exc:
            answers.append(exc.code)
        except BaseException as exc:  # pragma: no cover - reported below
            answers.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(submits)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    memo = Invoice.objects.get(kind="credit_memo")
    assert sorted(answers, key=str) == sorted(
        [memo.number] + ["billing_already_applied"] * (submits - 1), key=str
    )
    inv.refresh_from_db()
    line.refresh_from_db()
    assert inv.credited_total == -memo.total and line.credited_amount == D("0.10")


# --------------------------------------------------------------------------- required tokens


@pytest.mark.django_db
def test_an_invoice_action_without_its_one_time_token_is_refused_and_changes_nothing(
    client: Client, approver: User
) -> None:
    inv = _finalized()
    client.force_login(approver)
    for url, body in [
        (f"/billing/invoices/{inv.pk}/void/", {"reason": "wrong", "confirmed": "1"}),
        (
            f"/billing/invoices/{inv.pk}/paid/",
            {"amount": "0.10", "received_on": "2026-12-01", "method": "card"},
        ),
        (f"/exceptions/invoices/{inv.pk}/credit/", {"whole": "1", "reason": "r", "confirmed": "1"}),
    ]:
        resp = client.post(url, body)
        text = resp.content.decode()
        assert resp.status_code == 400, (url, resp.status_code)
        assert "no one-time token" in text and "idempotency_key" in text, url
    inv.refresh_from_db()
    assert inv.status == "finalized" and not inv.payments.exists()
    assert not ActionKey.objects.exists()
    from exceptions.models import ExceptionCase

    assert not ExceptionCase.objects.filter(kind="credit_request").exists()


@pytest.mark.django_db
def test_the_same_payment_form_submitted_twice_records_one_payment_and_says_so(
    client: Client, clerk: User
) -> None:
    inv = _finalized()
    client.force_login(clerk)
    page = client.get(f"/billing/invoices/{inv.pk}/").content.decode()
    form = page[page.index(f"billing/invoices/{inv.pk}/paid/") :]
    found = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', form)
    assert found is not None
    body = {
        "amount": "0.20",
        "received_on": "2026-12-01",
        "method": "card",
        "idempotency_key": found.group(1),
    }
    first = client.post(f"/billing/invoices/{inv.pk}/paid/", body, follow=True).content.decode()
    second = client.post(f"/billing/invoices/{inv.pk}/paid/", body, follow=True).content.decode()
    assert "Payment of $0.20 recorded" in first
    assert "Already done: mark_paid of" in second and "nothing was applied again" in second
    assert inv.payments.count() == 1


@pytest.mark.django_db
def test_the_billing_run_forms_apply_a_double_submit_once(
    client: Client,
    approver: User,
    make_user: Callable[..., User],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.models import BillingRun
    from tests.billing.conftest import entity

    entity("ll-us", "USD", 2, "UTC")
    queued: list[object] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: queued.append(a))
    client.force_login(make_user("runner", roles.INTEGRATION_ADMIN))
    page = client.get("/billing/runs/").content.decode()
    found = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page)
    assert found is not None
    body = {"entity": "ll-us", "period": "2026-10", "idempotency_key": found.group(1)}
    client.post("/billing/runs/start/", body)
    again = client.post("/billing/runs/start/", body, follow=True).content.decode()
    assert BillingRun.objects.filter(legal_entity__code="ll-us").count() == 1
    assert "Already done: run_start of billing run ll-us 2026-10" in again
    missing = client.post("/billing/runs/start/", {"entity": "ll-us", "period": "2026-10"})
    assert missing.status_code == 400 and "no one-time token" in missing.content.decode()


@pytest.mark.django_db
def test_finalizing_a_runs_drafts_twice_with_one_token_says_so(
    client: Client, approver: User
) -> None:
    draft = one_draft()
    run = draft.billing_run
    assert run is not None
    client.force_login(approver)
    row = client.get(f"/billing/runs/{run.pk}/progress/").content.decode()
    found = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', row)
    assert found is not None
    token = {"idempotency_key": found.group(1)}
    first = client.post(f"/billing/runs/{run.pk}/finalize/", token, follow=True).content.decode()
    second = client.post(f"/billing/runs/{run.pk}/finalize/", token, follow=True).content.decode()
    assert "Finalized 1 draft(s)" in first
    assert f"Already done: finalize_selected of the drafts of billing run {run.label}" in second
    draft.refresh_from_db()
    assert draft.status == "finalized"
    # the list's "finalize selected" form: the same
    body = {"invoice": [draft.pk], "idempotency_key": "list-token-1"}
    client.post("/billing/invoices/finalize/", body)
    said = client.post("/billing/invoices/finalize/", body, follow=True).content.decode()
    assert "Already done: finalize_selected of 1 selected document(s)" in said


# --------------------------------------------------------------------------- the API's actions


@pytest.mark.django_db
def test_the_plan_and_contract_api_actions_apply_a_retry_with_the_same_key_once(
    make_api_key: Callable[..., Any], api_client: Callable[[str], Any]
) -> None:
    from billing.models import ContractAmendment, PricePlanVersion
    from tests.billing.conftest import contract, customer, entity, plan

    us = entity("ll-us", "USD", 2, "UTC")
    c = contract(
        customer(us, "acme"),
        plan("basic", us.base_currency, [API_PER_CALL]),
        date(2026, 1, 1),
    )
    client = api_client(make_api_key("admin").raw_key)
    other = api_client(make_api_key("admin", name="other").raw_key)
    amend = {"effective_from": "2026-03-01", "overrides": {}, "reason": "list price"}
    url = f"/api/v1/billing/contracts/{c.pk}/amendments"
    first = client.post(url, amend, format="json", HTTP_IDEMPOTENCY_KEY="amend-1")
    retry = client.post(url, amend, format="json", HTTP_IDEMPOTENCY_KEY="amend-1")
    assert first.status_code == 201, first.json()
    assert retry.status_code == 409 and retry.json()["code"] == "billing_already_applied"
    assert f"contract_amend of contract {c.code}" in retry.json()["message"]
    assert ContractAmendment.objects.filter(contract=c).count() == 1
    # another client's "amend-1" is its own key: refused only because the day is taken
    theirs = other.post(url, amend, format="json", HTTP_IDEMPOTENCY_KEY="amend-1")
    assert theirs.status_code == 409 and theirs.json()["code"] == "billing_invalid_contract"
    version = {"effective_from": "2026-06-01", "components": [API_PER_CALL]}
    vurl = "/api/v1/billing/price-plans/basic/versions"
    assert client.post(vurl, version, format="json", HTTP_IDEMPOTENCY_KEY="v-1").status_code == 201
    again = client.post(vurl, version, format="json", HTTP_IDEMPOTENCY_KEY="v-1")
    assert again.status_code == 409 and again.json()["code"] == "billing_already_applied"
    assert PricePlanVersion.objects.filter(plan__code="basic").count() == 2
    end = {"end_date": "2026-12-01", "reason": "churned"}
    eurl = f"/api/v1/billing/contracts/{c.pk}/end"
    assert client.post(eurl, end, format="json", HTTP_IDEMPOTENCY_KEY="e-1").status_code == 200
    ended = client.post(eurl, end, format="json", HTTP_IDEMPOTENCY_KEY="e-1")
    assert ended.status_code == 409 and ended.json()["code"] == "billing_already_applied"
    too_long = client.post(eurl, end, format="json", HTTP_IDEMPOTENCY_KEY="k" * 81)
    assert too_long.status_code == 400 and too_long.json()["code"] == "invalid_parameter"
