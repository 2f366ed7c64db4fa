"""Constants and small helpers shared by the billing service modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.db import IntegrityError, transaction

from billing.models import ActionKey, EntityBillingSettings, Invoice
from billing.error_codes import BillingErrorCode
from billing.money import ROUND_HALF_UP
from billing.rating import RatingError
from billing.terms import TermsError
from core.actors import Actor
from core.errors import AppError, Conflict
from core.models import LegalEntity

ZERO = Decimal(0)
T = TypeVar("T")

#: Contracts rated and written per transaction: each batch is one bulk insert of
#: invoices, one of lines, one of tax lines and one progress update.
RUN_BATCH_SIZE = 1000
#: Rows per INSERT statement when bulk-creating lines and finance events.
BULK_INSERT_BATCH_SIZE = 2000
#: Drafts finalized per transaction (numbers, summaries closed, finance events).
FINALIZE_BATCH_SIZE = 2000
#: A run still "running" after this long is taken to have died and may be restarted.
RUN_STALE_AFTER = timedelta(hours=2)
#: How far back the run looks for late usage in finalized periods (events older
#: than EVENT_MAX_AGE_DAYS are rejected by metering, so nothing older can change).
LATE_USAGE_EXTRA_DAYS = 31


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rating_error(exc: RatingError | TermsError, code: str) -> AppError:
    extra: dict[str, Any] = {"rating_code": exc.code}
    if isinstance(exc, RatingError):
        extra["path"] = exc.path
    return AppError(exc.message, code=code, extra=extra)


def entity_rounding(legal_entity: LegalEntity) -> str:
    cfg = EntityBillingSettings.objects.filter(legal_entity=legal_entity).first()
    return cfg.rounding if cfg else ROUND_HALF_UP


def claim_action_key(
    *,
    key: str | None,
    action: str,
    actor: Actor,
    invoice: Invoice | None = None,
    subject: str = "",
) -> ActionKey | None:
    """Claim a request's one-time key inside the caller's transaction, before anything is locked.

    The action is on `invoice`, or on `subject` (a billing run, a contract, a price plan, named
    for the answer to a replay). No key (None): nothing to claim. A key used before raises `Conflict`
    (`billing_already_applied`) naming what the first request did. Two
    requests with the same key at once: the second waits on the key's unique
    index until the first commits (then it is told) or rolls back (then it
    claims the key and goes on), so the action is applied once.
    """
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > ActionKey.KEY_MAX_LENGTH:
        raise AppError(
            "An idempotency key is 1 to 100 characters.",
            code=BillingErrorCode.INVALID_IDEMPOTENCY_KEY,
        )
    try:
        with transaction.atomic():
            return ActionKey.objects.create(
                key=key,
                action=action,
                invoice_id=invoice.pk if invoice is not None else None,
                subject=subject[:200],
                actor_label=actor.label,
            )
    except IntegrityError:
        used = ActionKey.objects.select_related("invoice", "result").get(key=key)
    on = used.invoice if used.invoice is not None else used.subject
    done = f"{used.action} of {on}" + (f" ({used.result})" if used.result else "")
    raise Conflict(
        f"Already done: {done} was applied by {used.actor_label} at "
        f"{used.created_at:%Y-%m-%d %H:%M:%S} UTC; nothing was applied again.",
        code=BillingErrorCode.ALREADY_APPLIED,
        extra={
            "action": used.action,
            "invoice_id": used.invoice_id,
            "subject": used.subject,
            "result_id": used.result_id,
            "result_number": used.result.number if used.result else None,
        },
    )


def record_action_result(claim: ActionKey | None, result: Invoice) -> None:
    """Name the document the claimed action made (a credit memo), for the answer to a replay."""
    if claim is not None:
        ActionKey.objects.filter(pk=claim.pk).update(result=result)
