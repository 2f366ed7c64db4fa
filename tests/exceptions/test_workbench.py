"""The workbench's rules, through its services: four eyes, stale forms, roles, audit, replay."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import AppError, Conflict, PermissionDenied
from exceptions.models import AuditEntry, CaseProposal, CaseStatus, ExceptionCase, ExceptionPolicy
from exceptions.services import case_open_or_update
from exceptions.workbench import services as wb
from metering import selectors as metering_selectors
from tests.exceptions.conftest import ACTOR

pytestmark = pytest.mark.django_db


def _entries(case: ExceptionCase, action: str) -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(
            object_type="exceptions.exceptioncase", object_id=str(case.pk), action=action
        ).order_by("seq")
    )


def _propose_fix(case: ExceptionCase, caller: wb.Caller, **changes: str) -> CaseProposal:
    rejected = metering_selectors.rejected_events().get(case_id=case.pk)
    assert isinstance(rejected.raw, dict)
    return wb.proposal_submit(
        case_id=case.pk,
        kind="correction",
        target="rejected_event",
        target_id=str(rejected.pk),
        original=rejected.raw,
        proposed=rejected.raw | (changes or {"metric": "api_calls"}),
        amount=None,
        reason_code="wrong_metric",
        comment="typo in the producer",
        caller=caller,
        version=case.version,
    )


def test_policy_sets_due_date_and_raises_severity_by_amount(usd) -> None:
    ExceptionPolicy.objects.create(
        kind="posting_failed",
        high_amount=Decimal("1000"),
        critical_amount=Decimal("100000"),
        due_hours=8,
        four_eyes_above=Decimal("500"),
    )
    before = timezone.now()
    case, _ = case_open_or_update(
        kind="posting_failed",
        fingerprint="p:1",
        title="t",
        actor=ACTOR,
        severity="low",
        amount_at_stake=Decimal("1500.00"),
        currency_id="USD",
    )
    assert case.severity == "high"
    assert case.due_at is not None
    assert before + timedelta(hours=8) <= case.due_at <= timezone.now() + timedelta(hours=8)
    again, created = case_open_or_update(
        kind="posting_failed",
        fingerprint="p:1",
        title="t",
        actor=ACTOR,
        amount_at_stake=Decimal("100000.00"),
        currency_id="USD",
    )
    assert not created and again.pk == case.pk
    again.refresh_from_db()
    assert (again.severity, again.occurrence_count) == ("critical", 2)


def test_clerk_proposes_and_cannot_approve_own_correction(rejected_case, clerk, approver) -> None:
    c_clerk = wb.Caller.for_user(clerk)
    proposal = _propose_fix(rejected_case, c_clerk)
    rejected_case.refresh_from_db()
    assert proposal.status == "pending" and proposal.four_eyes
    assert rejected_case.status == CaseStatus.AWAITING_APPROVAL
    with pytest.raises(PermissionDenied) as refused:
        wb.proposal_approve(case_id=rejected_case.pk, caller=c_clerk, version=rejected_case.version)
    assert refused.value.code == "self_approval"


def test_an_approver_cannot_approve_their_own_proposal(rejected_case, approver) -> None:
    me = wb.Caller.for_user(approver)
    _propose_fix(rejected_case, me)
    rejected_case.refresh_from_db()
    with pytest.raises(PermissionDenied) as refused:
        wb.proposal_approve(case_id=rejected_case.pk, caller=me, version=rejected_case.version)
    assert refused.value.code == "self_approval"
    assert CaseProposal.objects.get().status == "pending"


def test_database_refuses_approver_equal_to_proposer(rejected_case, approver) -> None:
    proposal = _propose_fix(rejected_case, wb.Caller.for_user(approver))
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseProposal.objects.filter(pk=proposal.pk).update(
            approved_by=approver, approved_at=timezone.now(), status="approved"
        )


def test_database_refuses_an_applied_proposal_nobody_approved(rejected_case, clerk) -> None:
    proposal = _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseProposal.objects.filter(pk=proposal.pk).update(status="applied")


def test_approved_correction_is_reingested_and_resolves_the_case(
    rejected_case, clerk, approver
) -> None:
    _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    rejected_case.refresh_from_db()
    proposal = wb.proposal_approve(
        case_id=rejected_case.pk, caller=wb.Caller.for_user(approver), version=rejected_case.version
    )
    assert proposal.status == "applied", proposal.result
    assert proposal.result["outcome"] == "accepted"
    assert proposal.approved_by == approver
    rejected_case.refresh_from_db()
    assert rejected_case.status == CaseStatus.RESOLVED
    rejected = metering_selectors.rejected_events().get(case_id=rejected_case.pk)
    assert (rejected.status, rejected.resubmission_outcome) == ("resubmitted", "accepted")
    actions = [
        e.action
        for e in AuditEntry.objects.filter(
            object_type="exceptions.exceptioncase", object_id=str(rejected_case.pk)
        ).order_by("seq")
    ]
    assert actions == [
        "case.open",
        "proposal.submit",
        "proposal.approve",
        "proposal.apply",
        "case.resolved",
    ]
    submit = _entries(rejected_case, "proposal.submit")[0]
    assert submit.before is not None and submit.after is not None
    assert submit.before["original"]["metric"] == "api_cals"
    assert submit.after["proposed"]["metric"] == "api_calls"
    assert submit.reason == "wrong_metric: typo in the producer"


def test_correction_rejected_again_fails_and_a_new_edit_needs_approval_again(
    rejected_case, clerk, approver
) -> None:
    _propose_fix(rejected_case, wb.Caller.for_user(clerk), metric="still_wrong")
    rejected_case.refresh_from_db()
    failed = wb.proposal_approve(
        case_id=rejected_case.pk, caller=wb.Caller.for_user(approver), version=rejected_case.version
    )
    assert failed.status == "failed" and "unknown_metric" in failed.result["error"]
    rejected_case.refresh_from_db()
    assert rejected_case.status == CaseStatus.IN_PROGRESS
    second = _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    assert (second.status, second.revision, second.approved_by) == ("pending", 2, None)


def test_stale_form_is_refused_and_nothing_is_applied_twice(
    rejected_case, clerk, approver, make_user
) -> None:
    from core import roles

    other = make_user("approver2", roles.FINANCE_APPROVER)
    _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    rejected_case.refresh_from_db()
    seen = rejected_case.version
    wb.proposal_approve(case_id=rejected_case.pk, caller=wb.Caller.for_user(approver), version=seen)
    with pytest.raises(Conflict) as stale:
        wb.proposal_approve(
            case_id=rejected_case.pk, caller=wb.Caller.for_user(other), version=seen
        )
    assert stale.value.code == "case_stale"
    assert "changed by someone else" in stale.value.message
    assert len(_entries(rejected_case, "proposal.apply")) == 1


def test_customer_mapping_releases_held_events_and_resolves(
    unmapped_case, clerk, approver, customer_acme
) -> None:
    from exceptions.workbench import dispatch

    msg = dispatch.run(
        case=unmapped_case,
        caller=wb.Caller.for_user(clerk),
        action="map_customer",
        data={
            "customer_id": str(customer_acme.pk),
            "reason_code": "customer_onboarding",
            "comment": "new account of Acme",
            "version": str(unmapped_case.version),
        },
    )
    assert "different approver" in msg
    unmapped_case.refresh_from_db()
    wb.proposal_approve(
        case_id=unmapped_case.pk, caller=wb.Caller.for_user(approver), version=unmapped_case.version
    )
    unmapped_case.refresh_from_db()
    assert unmapped_case.status == CaseStatus.RESOLVED
    assert metering_selectors.held_events(source="app", customer_ref="acct-new").count() == 0
    assert metering_selectors.mappings().get(customer_ref="acct-new").customer == customer_acme


def test_below_the_policy_amount_one_person_applies(
    unmapped_case, clerk, customer_acme, usd
) -> None:
    ExceptionCase.objects.filter(pk=unmapped_case.pk).update(
        amount_at_stake=Decimal("12.00"), currency=usd
    )
    ExceptionPolicy.objects.create(kind="unmapped_customer", four_eyes_above=Decimal("100"))
    unmapped_case.refresh_from_db()
    proposal = wb.proposal_submit(
        case_id=unmapped_case.pk,
        kind="correction",
        target="customer_mapping",
        target_id="app:acct-new",
        original={"source": "app", "customer_ref": "acct-new", "customer_id": None},
        proposed={"source": "app", "customer_ref": "acct-new", "customer_id": customer_acme.pk},
        amount=unmapped_case.amount_at_stake,
        reason_code="customer_onboarding",
        comment="small",
        caller=wb.Caller.for_user(clerk),
        version=unmapped_case.version,
    )
    assert (proposal.status, proposal.four_eyes) == ("applied", False)


def test_roles_are_enforced_by_the_services(rejected_case, auditor, clerk, make_user) -> None:
    from core import roles

    _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    rejected_case.refresh_from_db()
    other_clerk = make_user("clerk2", roles.FINANCE_CLERK)
    with pytest.raises(PermissionDenied) as not_approver:
        wb.proposal_approve(
            case_id=rejected_case.pk, caller=wb.Caller.for_user(other_clerk), version=None
        )
    assert not_approver.value.code == "action_not_allowed"
    with pytest.raises(PermissionDenied):
        wb.case_dismiss(
            case_id=rejected_case.pk,
            reason_code="expected",
            comment="x",
            caller=wb.Caller.for_user(auditor),
            version=None,
        )


def test_dismiss_needs_reason_and_reopen_brings_it_back(rejected_case, clerk) -> None:
    me = wb.Caller.for_user(clerk)
    with pytest.raises(AppError) as no_reason:
        wb.case_dismiss(case_id=rejected_case.pk, reason_code="", comment="", caller=me, version=1)
    assert no_reason.value.code == "reason_required"
    wb.case_dismiss(
        case_id=rejected_case.pk, reason_code="test_data", comment="demo", caller=me, version=1
    )
    rejected_case.refresh_from_db()
    assert (rejected_case.status, rejected_case.resolution_code) == ("dismissed", "test_data")
    wb.case_reopen(case_id=rejected_case.pk, reason="not test data", caller=me, version=2)
    rejected_case.refresh_from_db()
    assert rejected_case.status == "open" and rejected_case.resolved_at is None
    entry = _entries(rejected_case, "case.reopen")[0]
    assert entry.before is not None and entry.after is not None
    assert (entry.before["status"], entry.after["status"], entry.reason) == (
        "dismissed",
        "open",
        "not test data",
    )


def test_bulk_assign_and_dismiss(rejected_case, unmapped_case, clerk) -> None:
    me = wb.Caller.for_user(clerk)
    done = wb.cases_bulk_assign(
        case_ids=[rejected_case.pk, unmapped_case.pk], assignee=clerk, caller=me
    )
    assert sorted(done.done) == sorted([rejected_case.pk, unmapped_case.pk])
    assert set(ExceptionCase.objects.values_list("status", "assignee")) == {
        ("in_progress", clerk.pk)
    }
    out = wb.cases_bulk_dismiss(
        case_ids=[rejected_case.pk, unmapped_case.pk],
        reason_code="expected",
        comment="ok",
        caller=me,
    )
    assert len(out.done) == 2 and not out.skipped
    again = wb.cases_bulk_dismiss(
        case_ids=[rejected_case.pk], reason_code="expected", comment="ok", caller=me
    )
    assert again.skipped and not again.done


def test_retry_unmapped_after_mapping_elsewhere(unmapped_case, clerk, customer_acme) -> None:
    from metering.models import CustomerMapping

    me = wb.Caller.for_user(clerk)
    first = wb.case_retry(case_id=unmapped_case.pk, caller=me, version=None)
    assert not first.resolved and "still not mapped" in first.message
    CustomerMapping.objects.create(source="app", customer_ref="acct-new", customer=customer_acme)
    second = wb.case_retry(case_id=unmapped_case.pk, caller=me, version=None)
    assert second.resolved
    unmapped_case.refresh_from_db()
    assert unmapped_case.status == "resolved" and unmapped_case.retry_count == 2


def test_policy_edit_by_approver_only_and_audited(clerk, approver) -> None:
    with pytest.raises(PermissionDenied):
        wb.policy_update(
            kind="usage_rejected", values={"due_hours": 4}, caller=wb.Caller.for_user(clerk)
        )
    policy = wb.policy_update(
        kind="usage_rejected",
        values={"due_hours": 4, "four_eyes_above": Decimal("250")},
        caller=wb.Caller.for_user(approver),
    )
    assert policy.due_hours == 4
    entry = AuditEntry.objects.get(action="policy.change")
    assert entry.before == {"due_hours": 72, "four_eyes_above": "0"}
    assert entry.after == {"due_hours": 4, "four_eyes_above": "250"}
    with pytest.raises(AppError):
        wb.policy_update(
            kind="usage_rejected",
            values={"high_amount": Decimal("10"), "critical_amount": Decimal("5")},
            caller=wb.Caller.for_user(approver),
        )


def test_database_refuses_a_critical_amount_below_high() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ExceptionPolicy.objects.create(
            kind="x", high_amount=Decimal("10"), critical_amount=Decimal("5")
        )


def test_database_refuses_two_pending_proposals_on_a_case(rejected_case, clerk) -> None:
    proposal = _propose_fix(rejected_case, wb.Caller.for_user(clerk))
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseProposal.objects.create(
            case=rejected_case,
            kind="correction",
            target="rejected_event",
            proposed={},
            reason_code="other",
            comment="x",
            proposed_by_label="x",
            proposed_at=proposal.proposed_at,
        )


def test_escalation_by_age_is_audited_and_runs_once(rejected_case) -> None:
    ExceptionPolicy.objects.create(
        kind="usage_rejected", high_after_hours=24, critical_after_hours=120
    )
    later = timezone.now() + timedelta(hours=30)
    assert wb.cases_escalate(now=later) == 1
    assert wb.cases_escalate(now=later) == 0
    rejected_case.refresh_from_db()
    assert rejected_case.severity == "high"
    assert wb.cases_escalate(now=timezone.now() + timedelta(hours=121)) == 1
    rejected_case.refresh_from_db()
    assert rejected_case.severity == "critical"
    assert [e.after for e in _entries(rejected_case, "case.escalate")] == [
        {"severity": "high"},
        {"severity": "critical"},
    ]


def test_auto_retry_follows_the_policy(unmapped_case, customer_acme) -> None:
    from metering.models import CustomerMapping

    ExceptionPolicy.objects.create(
        kind="unmapped_customer", auto_retry=True, retry_every_minutes=10, max_auto_retries=3
    )
    ExceptionCase.objects.filter(pk=unmapped_case.pk).update(next_retry_at=timezone.now())
    assert wb.cases_auto_retry() == 1
    unmapped_case.refresh_from_db()
    assert unmapped_case.retry_count == 1 and unmapped_case.next_retry_at > timezone.now()
    assert wb.cases_auto_retry() == 0  # not due yet
    CustomerMapping.objects.create(source="app", customer_ref="acct-new", customer=customer_acme)
    assert wb.cases_auto_retry(now=timezone.now() + timedelta(minutes=11)) == 1
    unmapped_case.refresh_from_db()
    assert unmapped_case.status == "resolved" and unmapped_case.next_retry_at is None


def test_case_counts_follow_every_change_in_the_database(
    rejected_case, unmapped_case, clerk
) -> None:
    from exceptions.models import CaseCount

    def counts() -> dict[tuple[str, str], int]:
        return {(c.kind, c.status): c.n for c in CaseCount.objects.filter(n__gt=0)}

    assert counts() == {("usage_rejected", "open"): 1, ("unmapped_customer", "open"): 1}
    wb.case_dismiss(
        case_id=rejected_case.pk,
        reason_code="expected",
        comment="x",
        caller=wb.Caller.for_user(clerk),
        version=None,
    )
    ExceptionCase.objects.filter(pk=unmapped_case.pk).update(kind="posting_failed")
    assert counts() == {("usage_rejected", "dismissed"): 1, ("posting_failed", "open"): 1}
    with pytest.raises(IntegrityError), transaction.atomic():
        CaseCount.objects.filter(kind="posting_failed").update(n=-1)
