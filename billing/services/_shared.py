"""Constants and small helpers shared by the billing service modules."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from billing.models import (
    EntityBillingSettings,
)
from billing.money import ROUND_HALF_UP
from billing.rating import RatingError
from billing.terms import TermsError
from core.errors import AppError
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
