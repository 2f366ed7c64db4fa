"""A state-changing request carried twice (double submit, retry, two at once) is applied once."""

from __future__ import annotations

from core import roles

import re
from collections.abc import Callable
import threading
from decimal import Decimal

from django.contrib.auth.models import User
from django.test import Client
import pytest
from django.db import connections

from billing import services
from billing.models import ActionKey, Invoice
from core.errors import AppError, Conflict
from tests.billing.conftest import ACTOR, one_draft
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
