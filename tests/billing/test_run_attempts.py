"""Every billing run attempt is its own row (decision 52): a re-run never overwrites a failed
attempt, and at most one attempt of an entity's month is pending or running."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest
from pytest_django import DjangoCaptureOnCommitCallbacks
from django.contrib.auth.models import User
from django.db import IntegrityError, connections, transaction
from django.test import Client
from django.utils import timezone

from billing import services
from billing.error_codes import BillingErrorCode
from billing.models import BillingRun, Invoice
from billing.periods import parse_period
from billing.tasks import billing_run_task
from core.errors import AppError, Conflict
from core.models import LegalEntity
from exceptions.models import AuditEntry, ExceptionCase
from exceptions.workbench.services import case_retry
from tests.billing.conftest import (
    ACTOR,
    API_PER_CALL,
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    metric,
    plan,
    send,
)
from tests.conftest import requires_postgres

pytestmark = pytest.mark.django_db

NOVEMBER = parse_period("2026-11")
#: The day after November closed (its grace window has passed).
AFTER_NOVEMBER = datetime(2026, 12, 3, tzinfo=UTC)


def _world(customers: int = 2) -> tuple[LegalEntity, list[int]]:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    p = plan("basic", us.base_currency, [API_PER_CALL])
    ids = []
    for i in range(customers):
        cust = customer(us, f"c{i}")
        ids.append(contract(cust, p, date(2026, 10, 1)).pk)
        send(cust, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), count=i + 1)
    return us, ids


def _fail_late_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the late-usage step (after the drafts are written) fail, once."""
    calls = {"n": 0}

    def boom(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("ERP rate table unreachable")
        return 0

    monkeypatch.setattr("billing.services.runs.late_usage_corrections", boom)


def test_a_failed_run_then_a_rerun_are_two_rows_each_with_its_own_status(
    monkeypatch: pytest.MonkeyPatch, client: Client, auditor: User
) -> None:
    us, contract_ids = _world()
    _fail_late_usage(monkeypatch)
    with pytest.raises(RuntimeError, match="rate table unreachable"):
        bill(us, "2026-11")
    first = BillingRun.objects.get()
    assert (first.attempt, first.status, first.invoices_created) == (1, "failed", 2)
    assert first.error == "ERP rate table unreachable" and first.finished_at is not None

    second = bill(us, "2026-11")
    first.refresh_from_db()
    # the failed attempt keeps what it recorded; the re-run is a new row
    assert (first.status, first.error, first.invoices_created) == (
        "failed",
        "ERP rate table unreachable",
        2,
    )
    assert (second.pk != first.pk, second.attempt, second.status, second.error) == (
        True,
        2,
        "done",
        "",
    )
    assert second.invoices_created == 0 and second.started_at is not None
    assert second.started_at >= first.started_at  # type: ignore[operator]
    # one invoice per contract period still: the drafts stay with the attempt that wrote them
    assert Invoice.objects.filter(kind="invoice").count() == 2
    assert set(Invoice.objects.values_list("billing_run_id", flat=True)) == {first.pk}
    assert [i.total for i in Invoice.objects.order_by("contract_id")] == [D("0.10"), D("0.20")]
    # each attempt's audit entries are its own
    assert list(
        AuditEntry.objects.filter(object_id=str(first.pk), object_type="billing.billingrun")
        .order_by("id")
        .values_list("action", flat=True)
    ) == [
        "billing_run.create",
        "billing_run.start",
        "billing_run.drafts_create",
        "billing_run.fail",
    ]
    assert list(
        AuditEntry.objects.filter(object_id=str(second.pk), object_type="billing.billingrun")
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["billing_run.create", "billing_run.start", "billing_run.finish"]

    client.force_login(auditor)
    history = client.get("/billing/runs/history/").content.decode()
    assert f'href="/billing/runs/{first.pk}/"' in history
    assert f'href="/billing/runs/{second.pk}/"' in history
    assert "ERP rate table unreachable" in history
    assert f"{second.finished_at:%Y-%m-%d %H:%M:%S}" in history
    page = client.get(f"/billing/runs/{first.pk}/").content.decode()
    assert "attempt 1" in page and "ERP rate table unreachable" in page
    assert f'href="/billing/runs/{second.pk}/"' in page  # the month's other attempt
    doc = Invoice.objects.order_by("pk").first()
    assert doc is not None
    assert "Documents drafted (2)" in page and f'href="/billing/invoices/{doc.pk}/"' in page
    assert (
        "This attempt drafted no documents."
        in client.get(f"/billing/runs/{second.pk}/").content.decode()
    )
    invoice_page = client.get(f"/billing/invoices/{doc.pk}/").content.decode()
    assert f'<a href="/billing/runs/{first.pk}/">billing run #{first.pk} (attempt 1)</a>' in (
        invoice_page
    )


def test_finalizing_a_run_finalizes_the_drafts_its_failed_attempt_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    us, _ = _world()
    _fail_late_usage(monkeypatch)
    with pytest.raises(RuntimeError):
        bill(us, "2026-11")
    second = bill(us, "2026-11")
    done = services.billing_run_finalize(run=second, actor=ACTOR)
    assert len(done) == 2
    assert not Invoice.objects.filter(status="draft").exists()


def test_a_second_attempt_while_one_is_pending_is_refused_with_the_running_one_named() -> None:
    us, _ = _world(1)
    first = services.billing_run_request(
        legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
    )
    with pytest.raises(Conflict) as refused:
        services.billing_run_request(
            legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
        )
    assert refused.value.code == BillingErrorCode.RUN_IN_PROGRESS
    assert refused.value.extra == {"run_id": first.pk}
    assert f"Billing run #{first.pk} of ll-us for 2026-11 (attempt 1) is queued at" in (
        refused.value.message
    )
    assert "wait for it to finish" in refused.value.message
    assert BillingRun.objects.count() == 1


def test_the_database_refuses_a_second_attempt_in_progress_for_a_month() -> None:
    us, _ = _world(1)

    def attempt(n: int, status: str) -> BillingRun:
        return BillingRun.objects.create(
            legal_entity=us,
            period_start=NOVEMBER.start,
            period_end=NOVEMBER.end,
            attempt=n,
            status=status,
        )

    attempt(1, "running")
    with pytest.raises(IntegrityError), transaction.atomic():
        attempt(2, "pending")
    # an ended attempt does not count: failed and done ones may sit beside it
    attempt(3, "failed")
    attempt(4, "done")
    assert BillingRun.objects.count() == 3
    with pytest.raises(IntegrityError), transaction.atomic():
        attempt(4, "failed")  # and each attempt number once


def test_an_attempt_that_stopped_reporting_is_abandoned_by_the_next_one() -> None:
    us, [c] = _world(1)
    stale = services.billing_run_request(
        legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
    )
    BillingRun.objects.filter(pk=stale.pk).update(
        status="running", started_at=timezone.now() - timedelta(hours=3)
    )
    fresh = services.billing_run_request(
        legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
    )
    stale.refresh_from_db()
    assert (stale.status, fresh.attempt, fresh.status) == ("failed", 2, "pending")
    assert stale.error.startswith("Abandoned: still running 2 h after it was queued or started")
    services.billing_run_execute(run_id=fresh.pk, actor=ACTOR)
    assert invoice_of(BillingRun.objects.get(pk=fresh.pk).invoices.get().contract).total == D(
        "0.10"
    )


def test_an_attempt_runs_once_and_a_second_task_delivery_does_nothing() -> None:
    us, _ = _world(1)
    run = services.billing_run_request(
        legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
    )
    billing_run_task(run.pk, "integrator")
    with pytest.raises(AppError) as ended:
        services.billing_run_execute(run_id=run.pk, actor=ACTOR)
    assert ended.value.code == BillingErrorCode.RUN_ENDED
    assert "has ended (done); run the month again for a new attempt" in ended.value.message
    billing_run_task(run.pk, "integrator")  # django-q delivered it twice: nothing happens
    assert BillingRun.objects.get().invoices_created == 1
    assert Invoice.objects.count() == 1


def test_retrying_a_failed_run_case_runs_the_month_as_a_new_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(cust, plan("basic", us.base_currency, [API_PER_CALL]), date(2026, 9, 1))
    send(cust, "api_calls", datetime(2026, 10, 5, tzinfo=UTC), count=4)
    _fail_late_usage(monkeypatch)
    with pytest.raises(RuntimeError):
        bill(us, "2026-10")
    case = ExceptionCase.objects.get(kind="billing_run_failed")
    first = BillingRun.objects.get()
    assert case.source_id == str(first.pk)

    outcome = case_retry(case_id=case.pk, caller=None, version=None)
    again = BillingRun.objects.exclude(pk=first.pk).get()
    assert outcome.resolved and outcome.message == (
        f"Billing run 2026-10 finished (attempt 2, #{again.pk})."
    )
    assert (again.attempt, again.status) == (2, "done")
    assert BillingRun.objects.get(pk=first.pk).status == "failed"
    assert invoice_of(c).total == D("0.40")


def test_a_month_failing_again_counts_on_its_one_open_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    us, _ = _world(1)

    def always(*args: object, **kwargs: object) -> int:
        raise RuntimeError("still down")

    monkeypatch.setattr("billing.services.runs.late_usage_corrections", always)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            bill(us, "2026-11")
    assert list(BillingRun.objects.order_by("attempt").values_list("attempt", "status")) == [
        (1, "failed"),
        (2, "failed"),
    ]
    case = ExceptionCase.objects.get(kind="billing_run_failed")
    assert case.occurrence_count == 2


def test_the_schedule_gives_a_failed_month_a_new_attempt_and_stops_once_one_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.tasks import billing_runs_due

    us, _ = _world(1)
    _fail_late_usage(monkeypatch)
    monkeypatch.setattr("billing.tasks.timezone.now", lambda: datetime(2026, 12, 3, tzinfo=UTC))
    with pytest.raises(RuntimeError):
        billing_runs_due()
    [run_id] = billing_runs_due()
    assert BillingRun.objects.get(pk=run_id).attempt == 2
    assert billing_runs_due() == []  # done: nothing more
    assert list(BillingRun.objects.order_by("attempt").values_list("status", flat=True)) == [
        "failed",
        "done",
    ]


def test_the_admin_action_queues_a_new_attempt_of_each_selected_month(
    client: Client,
    integrator: User,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    queued: list[tuple[object, ...]] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args))
    us = entity("ll-us", "USD", 2, "UTC")
    october = bill(us, "2026-10")
    client.force_login(integrator)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/admin/billing/billingrun/",
            {"action": "run_again", "_selected_action": [october.pk]},
            follow=True,
        )
    again = BillingRun.objects.exclude(pk=october.pk).get()
    assert (again.attempt, again.status, again.period_start) == (2, "pending", date(2026, 10, 1))
    assert [str(m) for m in answer.context["messages"]] == [
        f"ll-us 2026-10: attempt 2 (#{again.pk}) queued."
    ]
    assert queued == [("billing.tasks.billing_run_task", again.pk, "integrator")]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_starts_at_once_one_runs_and_the_other_is_refused() -> None:
    """The first start holds its new attempt uncommitted while the second looks: the second
    sees no attempt in progress, its insert waits on the partial unique index, and is refused
    once the first commits."""
    us, [c] = _world(1)
    inserted, errors = threading.Event(), []
    refused: list[Conflict] = []
    started: list[BillingRun] = []

    def first() -> None:
        try:
            with transaction.atomic():
                started.append(
                    services.billing_run_request(
                        legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
                    )
                )
                inserted.set()
                time.sleep(0.5)  # the second start looks and inserts meanwhile
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            inserted.set()
        finally:
            connections.close_all()

    def second() -> None:
        try:
            inserted.wait(10)
            services.billing_run_request(
                legal_entity=us, month=NOVEMBER, actor=ACTOR, now=AFTER_NOVEMBER
            )
        except Conflict as exc:
            refused.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    [run] = started
    [conflict] = refused
    assert conflict.code == BillingErrorCode.RUN_IN_PROGRESS
    assert conflict.extra == {"run_id": run.pk}
    assert "wait for it to finish before running the month again" in conflict.message
    assert list(BillingRun.objects.values_list("pk", flat=True)) == [run.pk]
    services.billing_run_execute(run_id=run.pk, actor=ACTOR)
    assert Invoice.objects.get(contract_id=c).billing_run_id == run.pk


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_run_buttons_pressed_together_queue_one_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both through `billing_run_start` at a barrier: one attempt queued, the other refused."""
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)
    us, _ = _world(1)
    october = parse_period("2026-10")
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def press() -> None:
        try:
            barrier.wait()
            outcomes.append(services.billing_run_start(legal_entity=us, month=october, actor=ACTOR))
        except Conflict as exc:
            outcomes.append(exc)
        except BaseException as exc:  # pragma: no cover - reported below
            outcomes.append(("error", exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [o for o in outcomes if isinstance(o, BillingRun)]
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(runs) == 1 and len(conflicts) == 1, outcomes
    assert conflicts[0].code == BillingErrorCode.RUN_IN_PROGRESS
    assert BillingRun.objects.get().status == "pending"
