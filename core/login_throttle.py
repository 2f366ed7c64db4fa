"""Login throttling (django-axes): the lock-out of an account or an address is audited.

Axes counts failed logins per user name and per client address (settings
AXES_*) and refuses further attempts with 429 for the cool-off time. The
moment it locks one out it sends `user_locked_out`; this writes the audit
entry for it. Attempts refused while the lock-out lasts are not written again
(AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT is off, so axes does not count
them): one entry per lock-out, however hard someone keeps trying.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from core.actors import Actor
from core.audit import CoreAction, audit_record

ACTOR = Actor.system("login throttle")


def record_lock_out(
    sender: Any, *, request: HttpRequest, username: str | None, ip_address: str | None, **_: Any
) -> None:
    """Receiver of axes' `user_locked_out`: one audit entry when the limit is reached."""
    failures = getattr(request, "axes_failures_since_start", None)
    if failures is None:  # an attempt refused during a lock-out: already recorded
        return
    name = (username or "")[:64]
    with transaction.atomic():
        audit_record(
            actor=ACTOR,
            action=CoreAction.LOGIN_LOCK_OUT,
            object_type="auth.login",
            object_id=name,
            object_repr=f"{name or '(no user name)'} from {ip_address or '(unknown address)'}",
            after={"username": name, "ip_address": ip_address, "failures": failures},
            reason="too many failed logins",
        )
