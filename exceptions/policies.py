"""Exception policies: severity from amount and age, due date, retries, four-eyes threshold.

Core layer (imports no other app). A kind without a policy row gets DEFAULTS.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from exceptions.models import ExceptionPolicy, Severity

SEVERITY_ORDER: list[str] = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]

#: The policy of a kind nobody has configured: due in three days, escalate at 10,000 / 100,000
#: or after 2 / 5 days, no automatic retry, a second person for any correction or reversal.
DEFAULTS = {
    "high_amount": Decimal("10000"),
    "critical_amount": Decimal("100000"),
    "high_after_hours": 48,
    "critical_after_hours": 120,
    "due_hours": 72,
    "auto_retry": False,
    "retry_every_minutes": 30,
    "max_auto_retries": 5,
    "four_eyes_above": Decimal("0"),
}

#: Fields an approver edits on the policy page (and the audit entry records).
POLICY_FIELDS = tuple(DEFAULTS)


def policy_for(kind: str) -> ExceptionPolicy:
    """The kind's policy, or an unsaved one with the defaults."""
    found = ExceptionPolicy.objects.filter(kind=kind).first()
    return found if found is not None else ExceptionPolicy(kind=kind, **DEFAULTS)


def policies_by_kind(kinds: list[str]) -> dict[str, ExceptionPolicy]:
    found = {p.kind: p for p in ExceptionPolicy.objects.filter(kind__in=kinds)}
    return {k: found.get(k) or ExceptionPolicy(kind=k, **DEFAULTS) for k in kinds}


def _max(a: str, b: str) -> str:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b


def severity_for(
    *,
    policy: ExceptionPolicy,
    base: str,
    amount: Decimal | None,
    opened_at: datetime,
    now: datetime,
) -> str:
    """The higher of `base` and what the amount or the age call for (never lowers `base`)."""
    sev = base
    age_hours = (now - opened_at) / timedelta(hours=1)
    if amount is not None:
        amount = abs(amount)
        if policy.critical_amount is not None and amount >= policy.critical_amount:
            sev = _max(sev, Severity.CRITICAL)
        elif policy.high_amount is not None and amount >= policy.high_amount:
            sev = _max(sev, Severity.HIGH)
    if policy.critical_after_hours is not None and age_hours >= policy.critical_after_hours:
        sev = _max(sev, Severity.CRITICAL)
    elif policy.high_after_hours is not None and age_hours >= policy.high_after_hours:
        sev = _max(sev, Severity.HIGH)
    return sev


def due_at(*, policy: ExceptionPolicy, opened_at: datetime) -> datetime:
    return opened_at + timedelta(hours=policy.due_hours)


def needs_second_person(*, policy: ExceptionPolicy, amount: Decimal | None) -> bool:
    """A correction or reversal above the threshold, or of an amount nobody knows, needs four eyes."""
    return amount is None or abs(amount) > policy.four_eyes_above
