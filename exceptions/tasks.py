"""django-q2 entry points of the exception queue: thin, safe to run twice."""

from __future__ import annotations

from exceptions.workbench.services import cases_auto_retry, cases_escalate


def auto_retry_cases() -> int:
    """Scheduled every 5 minutes (migration 0004): retry what the policies retry automatically."""
    return cases_auto_retry()


def escalate_cases() -> int:
    """Scheduled every 15 minutes (migration 0004): severity by age, per policy."""
    return cases_escalate()
