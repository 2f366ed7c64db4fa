"""django-q2 entry points: take ids, call one service, safe to run twice."""

from __future__ import annotations

from django.utils import timezone

from billing.error_codes import BillingErrorCode
from billing.services import billing_run_execute, billing_runs_bill_due
from core.actors import Actor
from core.errors import AppError


def billing_run_task(run_id: int, requested_by: str = "") -> None:
    """Execute one pending billing run attempt (the UI button enqueues this).

    Delivered twice, the second delivery finds the attempt ended and does nothing.
    """
    label = "billing.run" + (f" for {requested_by}" if requested_by else "")
    try:
        billing_run_execute(run_id=run_id, actor=Actor.for_task(label))
    except AppError as exc:
        if exc.code != BillingErrorCode.RUN_ENDED:
            raise


def billing_runs_due() -> list[int]:
    """Scheduled hourly: bill last month of every entity once its grace window has passed."""
    return billing_runs_bill_due(actor=Actor.for_task("billing.schedule"), now=timezone.now())
