"""django-q2 entry points: take ids, call one service, safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing.services import billing_run_execute, month_ready_at
from billing.models import BillingRun, RunStatus
from billing.periods import local_date_of, parse_period
from core.models import LegalEntity
from core.actors import Actor


def billing_run_task(run_id: int, requested_by: str = "") -> None:
    """Execute one billing run (the UI button enqueues this)."""
    label = "billing.run" + (f" for {requested_by}" if requested_by else "")
    billing_run_execute(run_id=run_id, actor=Actor.for_task(label))


def billing_runs_due() -> list[int]:
    """Scheduled hourly: bill last month of every entity once its grace window has passed."""
    from billing.services import billing_run_request

    actor = Actor.for_task("billing.schedule")
    now = timezone.now()
    done: list[int] = []
    for entity in LegalEntity.objects.all():
        today = local_date_of(ts=now, tz=entity.timezone)
        last_month = today.replace(day=1) - timedelta(days=1)
        month = parse_period(f"{last_month:%Y-%m}")
        if now < month_ready_at(legal_entity=entity, month=month):
            continue
        existing = BillingRun.objects.filter(legal_entity=entity, period_start=month.start).first()
        if existing is not None and existing.status in (RunStatus.DONE, RunStatus.RUNNING):
            continue
        run = billing_run_request(legal_entity=entity, month=month, actor=actor, now=now)
        billing_run_execute(run_id=run.pk, actor=actor)
        done.append(run.pk)
    return done
