"""The ERP posting cases in the workbench, against the in-memory ERP: retry now, a posting date
corrected into an open period under four eyes and replayed, a missing GL mapping resolved by
mapping the account, and a reconciliation mismatch shown side by side."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import pytest

from billing import services as billing
from core import roles
from core.errors import AppError, PermissionDenied
from erp_sync.models import AccountMapping, AccountRole, Posting
from erp_sync.services import account_mapping_set, ledger_consume, outbox_drain
from erp_sync.services.reconciliation import reconcile
from exceptions.models import AuditEntry, ExceptionCase
from exceptions.workbench import dispatch
from exceptions.workbench.services import Caller
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import MAPPINGS, billed_world, memory_connection
from tests.erp_sync.world import erp_fixture  # noqa: F401 - the `erp` fixture

pytestmark = pytest.mark.django_db
DEC = (date(2026, 12, 1), date(2027, 1, 1))


@pytest.fixture
def people(make_user):
    clerk = make_user("clerk", roles.FINANCE_CLERK)
    approver = make_user("approver", roles.FINANCE_APPROVER)
    return Caller.for_user(clerk), Caller.for_user(approver)


def _actions(case: ExceptionCase) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_type="erp_sync.posting", object_id=case.source_id)
        .order_by("seq")
        .values_list("action", flat=True)
    )


def _run(case: ExceptionCase, caller: Caller, action: str, **data: object) -> str:
    case.refresh_from_db()
    return dispatch.run(
        case=case, caller=caller, action=action, data={"version": case.version, **data}
    )


def _failed_on_closed_period(erp):
    """One invoice finalized 2026-12-03 (so dated that day), refused: the ERP closed every
    period before 2026-12-10."""
    world = billed_world(1)
    memory_connection(world.entity)
    erp.closed_before = date(2026, 12, 10)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    return world


def test_a_posting_refused_for_a_closed_period_is_redated_under_four_eyes_and_posted(
    erp, people
) -> None:
    clerk, approver = people
    _failed_on_closed_period(erp)
    posting = Posting.objects.get(document_type="invoice")
    assert posting.status == "failed"
    case = ExceptionCase.objects.get(kind="posting_failed", source_id=str(posting.pk))
    assert 'The period of "2026-12-03" is closed.' in case.error_message

    said = _run(
        case,
        clerk,
        "correct_date",
        posting_date="2026-12-15",
        reason_code="wrong_time",
        comment="December's first days are closed in the ERP",
    )
    assert "waits for a different approver" in said
    with pytest.raises(PermissionDenied) as own:
        _run(case, clerk, "approve")
    assert own.value.code == "self_approval"
    posting.refresh_from_db()
    assert posting.payload["issue_date"] == "2026-12-03" and posting.status == "failed"

    said = _run(case, approver, "approve")
    assert "Dated 2026-12-15" in said and "pending again" in said
    posting.refresh_from_db()
    assert (posting.status, posting.payload["issue_date"]) == ("pending", "2026-12-15")
    assert _actions(case)[-2:] == ["posting.date_correct", "posting.replay"]
    date_entry = AuditEntry.objects.get(action="posting.date_correct")
    assert (date_entry.before, date_entry.after) == (
        {"issue_date": "2026-12-03"},
        {"issue_date": "2026-12-15"},
    )
    assert date_entry.actor_label == approver.actor.label

    outbox_drain()
    posting.refresh_from_db()
    assert posting.status == "posted"
    rec = erp.records[("invoice", posting.external_id)]
    assert rec.date == date(2026, 12, 15) and rec.total == Decimal("221.10")
    case.refresh_from_db()
    assert case.status == "resolved"


def test_a_date_that_changes_nothing_or_is_not_a_date_is_refused_naming_the_field(
    erp, people
) -> None:
    clerk, _ = people
    _failed_on_closed_period(erp)
    case = ExceptionCase.objects.get(kind="posting_failed")
    with pytest.raises(AppError) as bad:
        _run(
            case,
            clerk,
            "correct_date",
            posting_date="15/12/2026",
            reason_code="wrong_time",
            comment="x",
        )
    assert bad.value.code == "invalid_correction" and "posting_date" in bad.value.message
    with pytest.raises(AppError) as same:
        _run(
            case,
            clerk,
            "correct_date",
            posting_date="2026-12-03",
            reason_code="wrong_time",
            comment="x",
        )
    assert same.value.code == "nothing_changed"


def test_retry_now_replays_a_dead_posting_and_the_drain_resolves_its_case(erp, people) -> None:
    clerk, _ = people
    world = billed_world(1)
    memory_connection(world.entity, max_attempts=1)
    erp.fail_next("transient", "the ERP did not answer")
    ledger_consume(actor=ACTOR)
    outbox_drain()
    posting = Posting.objects.get(document_type="invoice")
    assert posting.status == "dead"
    case = ExceptionCase.objects.get(kind="posting_dead", source_id=str(posting.pk))

    said = _run(case, clerk, "retry")
    assert "pending again" in said
    posting.refresh_from_db()
    assert posting.status == "pending" and posting.attempts_at_replay == 1
    assert _actions(case)[-1] == "posting.replay"
    case.refresh_from_db()
    assert case.status in ("open", "in_progress") and case.retry_count == 1

    outbox_drain()
    posting.refresh_from_db()
    case.refresh_from_db()
    assert posting.status == "posted" and case.status == "resolved"
    assert erp.creates[posting.external_id] == 1  # looked up first, never posted twice


def test_retry_now_on_a_posting_that_is_not_replayable_says_so_and_changes_nothing(
    erp, people
) -> None:
    clerk, _ = people
    world = billed_world(1)
    memory_connection(world.entity, max_attempts=1)
    erp.fail_next("transient", "the ERP did not answer")
    ledger_consume(actor=ACTOR)
    outbox_drain()
    case = ExceptionCase.objects.get(kind="posting_dead")
    _run(case, clerk, "retry")
    said = _run(case, clerk, "retry")  # already pending
    assert "Not replayed" in said and "only failed, dead or held postings" in said


def test_a_missing_gl_mapping_is_resolved_by_mapping_the_account_which_releases_the_held(
    erp, people
) -> None:
    clerk, approver = people
    world = billed_world(2)
    conn = memory_connection(world.entity, mapped=False)
    for role, key, account in MAPPINGS:
        if role != AccountRole.TAX_PAYABLE:
            account_mapping_set(connection=conn, role=role, key=key, account=account, actor=ACTOR)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    assert set(Posting.objects.values_list("status", flat=True)) == {"held"}
    case = ExceptionCase.objects.get(kind="missing_gl_mapping")
    said = _run(case, clerk, "retry")
    assert "No tax_payable account is mapped" in said

    said = _run(case, clerk, "map_account", account="2200", reason_code="other", comment="VAT 10 %")
    assert "waits for a different approver" in said  # an unknown amount: always four eyes
    assert not AccountMapping.objects.filter(connection=conn, role="tax_payable").exists()
    said = _run(case, approver, "approve")
    assert "2 held posting(s) released" in said
    assert (
        AccountMapping.objects.get(connection=conn, role="tax_payable", key="0.1").account == "2200"
    )
    case.refresh_from_db()
    assert case.status == "resolved"
    assert set(Posting.objects.values_list("status", flat=True)) == {"pending"}
    outbox_drain()
    assert set(Posting.objects.values_list("status", flat=True)) == {"posted"}


def test_the_mismatch_case_page_shows_ours_and_the_erps_side_by_side(erp, people, client) -> None:
    _, approver = people
    world = billed_world(1)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    outbox_drain()
    ext = f"ll-inv-{world.invoices[0].pk}"
    rec = erp.records[("invoice", ext)]
    erp.records[("invoice", ext)] = dataclasses.replace(rec, total=rec.total - Decimal("0.01"))
    reconcile(legal_entity=world.entity, start=DEC[0], end=DEC[1], actor=ACTOR)
    case = ExceptionCase.objects.get(kind="reconciliation_mismatch", details__external_id=ext)
    client.force_login(approver.user)
    page = client.get(f"/exceptions/cases/{case.pk}/").content.decode()
    table = page[page.index('id="sides-table"') :]
    table = table[: table.index("</table>")]
    assert (
        '<tr class="changed"><th scope="row">total <span class="error">(differs)</span></th><td>221.1</td><td>221.09</td></tr>'
        in table
    )
    assert '<tr ><th scope="row">currency</th><td>USD</td><td>USD</td></tr>' in table


def test_the_posting_case_page_shows_every_attempt_and_offers_the_date_form(
    erp, people, client
) -> None:
    clerk, _ = people
    _failed_on_closed_period(erp)
    case = ExceptionCase.objects.get(kind="posting_failed")
    client.force_login(clerk.user)
    page = client.get(f"/exceptions/cases/{case.pk}/").content.decode()
    assert (
        'aria-label="ERP attempts"' in page
        and "The period of &quot;2026-12-03&quot; is closed." in page
    )
    assert 'id="posting-date">2026-12-03<' in page
    assert 'name="posting_date" value="2026-12-03"' in page
    assert "Propose new date" in page


def test_billing_keeps_its_refusal_when_a_credit_memo_is_too_large_for_the_request(people) -> None:
    # (the credit request checks billing's own refusals before it opens a case)
    from exceptions.workbench.credits import credit_memo_request

    clerk, _ = people
    world = billed_world(1)
    line = world.invoices[0].lines.order_by("position").first()
    assert line is not None
    with pytest.raises(AppError):
        credit_memo_request(
            invoice_id=world.invoices[0].pk,
            lines={line.pk: line.amount + Decimal("1")},
            reason="too much",
            caller=clerk,
        )
    assert not ExceptionCase.objects.filter(kind="credit_request").exists()
    assert billing  # billing's services issue the memo once approved (test_credit_four_eyes)
