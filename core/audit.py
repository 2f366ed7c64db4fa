"""How core's own writes reach the audit trail without core importing it.

The audit trail (hash chain, append-only table) belongs to `exceptions`, whose
models point at core's rows (API keys, currencies, customers); so `exceptions`
sits above `core` and `core` may not import it. Core's services still write
their audit entry in their own transaction: they call `audit_record` here,
which hands the call, synchronously and in the same transaction, to the
recorder that the settings name (`LEDGERLINE_AUDIT_RECORDER`, set by `config`
to `exceptions.services.audit_record`). `config` wires the two the way it
wires URLs; without a recorder a write fails loudly rather than go unaudited
(docs/decisions.md 36).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from django.utils.module_loading import import_string

from core.actors import Actor


class CoreAction(StrEnum):
    """Audit action names of core's services. Values are kept: the audit page filters on them."""

    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    CURRENCY_CREATE = "currency.create"
    CURRENCY_CHANGE = "currency.change"
    LEGAL_ENTITY_CREATE = "legal_entity.create"
    CUSTOMER_CREATE = "customer.create"
    LOGIN_LOCK_OUT = "login.lock_out"


class AdminEdit(StrEnum):
    """The verb of an audited admin edit; the action is `<model name>.<verb>` (customer.change)."""

    CREATE = "create"
    CHANGE = "change"
    DELETE = "delete"


class AuditRecorder(Protocol):
    """What records an entry: `exceptions.services.audit_record` has this signature."""

    def __call__(
        self,
        *,
        actor: Actor,
        action: str,
        obj: Model | None = None,
        object_type: str = "",
        object_id: str = "",
        object_repr: str = "",
        before: Any = None,
        after: Any = None,
        reason: str = "",
    ) -> object: ...


@cache
def recorder() -> AuditRecorder:
    """The recorder the settings name (looked up once per process)."""
    path = getattr(settings, "LEDGERLINE_AUDIT_RECORDER", "")
    if not path:
        raise ImproperlyConfigured(
            "LEDGERLINE_AUDIT_RECORDER is not set: core's writes have no audit trail to write to. "
            "Set it to 'exceptions.services.audit_record' (config/settings.py does)."
        )
    found: AuditRecorder = import_string(path)
    return found


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> None:
    """Write one audit entry, in the caller's transaction, for one of core's rows (`obj`) or for
    something that is not one row (`object_type`/`object_id`, e.g. a login name)."""
    recorder()(
        actor=actor,
        action=action,
        obj=obj,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr,
        before=before,
        after=after,
        reason=reason,
    )
