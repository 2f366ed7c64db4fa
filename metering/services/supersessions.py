"""Taking the new version of a duplicate conflict: the conflict's payload becomes an accepted
event and supersedes the one that stood (decision 51).

Events are append-only, so nothing is edited: the replacement is a new event (a new seq, the
conflict's receipt time), an `EventSupersession` links the two, and summaries and lineage leave
the original out from the watermark that reached its replacement on. The open summaries of both
windows (the original's and the replacement's, which may differ) are recomputed in the same
transaction. An original counted in a closed summary (billed on a finalized invoice) is refused:
a finalized invoice is corrected by a credit memo or an adjustment, never re-rated in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import AppError, Conflict
from exceptions.services import audit_record
from metering import ingest, reference, selectors
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringErrorCode
from metering.models import (
    DuplicateConflict,
    EventSupersession,
    UsageEvent,
    UsageSummary,
)
from metering.services.ingest import _validate
from metering.services.summaries import usage_summarize_window
from metering.summaries import event_watermark_hold


def _as_received(conflict: DuplicateConflict) -> tuple[Any, Any, str]:
    """The version kept, as ingest read it when it arrived: (raw, canonical event, channel).

    A conflict keeps the payload in its own format, so a CloudEvent or a Lago event goes through
    the same adapter as at intake; one that had no time takes its receipt time, as it did then.
    """
    raw = conflict.raw
    if isinstance(raw, dict) and "specversion" in raw:
        event, channel = ingest.from_cloudevent(raw), "cloudevents-supersede"
        stamped = isinstance(event, dict) and bool(event.get(ingest.TIME_FROM_RECEIPT))
    elif (
        isinstance(raw, dict) and conflict.source == ingest.LAGO_SOURCE and "transaction_id" in raw
    ):
        event, channel = ingest.from_lago(raw), "lago-supersede"
        stamped = raw.get("timestamp") in (None, "")
    else:
        return raw, raw, "supersede"
    if stamped and isinstance(event, dict):
        event["timestamp"] = conflict.received_at.isoformat()
    return raw, event, channel


def supersession_check(*, conflict: DuplicateConflict) -> tuple[UsageEvent, ingest.Candidate]:
    """What taking `conflict`'s version would supersede, and the replacement as validated now.
    Raises AppError (writes nothing) when it cannot be taken."""
    if EventSupersession.objects.filter(conflict=conflict).exists():
        raise Conflict(
            f"The version re-sent for {conflict.source}:{conflict.event_id} was already taken.",
            code=MeteringErrorCode.SUPERSESSION_DONE,
        )
    original = selectors.current_event(source=conflict.source, event_id=conflict.event_id)
    if original is None:
        raise AppError(
            f"{conflict.source}:{conflict.event_id} has no accepted event to supersede (it may "
            "still be held for a customer mapping: map the customer first).",
            code=MeteringErrorCode.SUPERSESSION_INVALID,
        )
    closed = selectors.summaries_for_event(event=original).filter(closed_at__isnull=False)
    if closed.exists():
        raise Conflict(
            f"{conflict.source}:{conflict.event_id} is already billed on a finalized invoice (its "
            "usage summary is closed). A finalized invoice is never changed: correct it with a "
            "credit memo or an adjustment on that invoice instead.",
            code=MeteringErrorCode.SUPERSESSION_BILLED,
            extra={"event_seq": original.seq},
        )
    raw, event, channel = _as_received(conflict)
    validated = _validate([(event, raw)], reference.current(), conflict.received_at, channel)
    if validated.rejections:
        rej = validated.rejections[0]
        raise AppError(
            f"The version re-sent is not a valid event: {rej.message} ({rej.code}).",
            code=MeteringErrorCode.SUPERSESSION_INVALID,
            extra={"event_code": rej.code},
        )
    new = validated.candidates[0]
    if (new.source, new.event_id) != (conflict.source, conflict.event_id):
        raise AppError(
            "The version re-sent names another event id.",
            code=MeteringErrorCode.SUPERSESSION_INVALID,
        )
    if new.customer_id is None:
        raise AppError(
            f"The version re-sent names {new.source}:{new.customer_ref}, which is not mapped to a "
            "customer; map it first.",
            code=MeteringErrorCode.SUPERSESSION_INVALID,
        )
    return original, new


def usage_event_supersede(
    *, conflict_id: int, reason: str, actor: Actor, case_id: int | None = None
) -> EventSupersession:
    """Take the version a conflicting redelivery carried: store it as an accepted event that
    supersedes the one standing for its (source, event_id), audited with before and after, and
    recompute the open summaries of both windows. Taking the same conflict twice applies once
    (the second call returns the first supersession)."""
    if not reason.strip():
        raise AppError(
            "Say why the new version is taken.", code=MeteringErrorCode.SUPERSESSION_INVALID
        )
    with transaction.atomic():
        conflict = DuplicateConflict.objects.select_for_update().filter(pk=conflict_id).first()
        if conflict is None:
            raise AppError(
                f"There is no conflicting redelivery #{conflict_id}.",
                code=MeteringErrorCode.SUPERSESSION_INVALID,
            )
        done = EventSupersession.objects.filter(conflict=conflict).first()
        if done is not None:
            return done
        original, new = supersession_check(conflict=conflict)
        customer_id = new.customer_id
        assert customer_id is not None  # supersession_check refuses an unmapped version
        # The watermark lock alone to commit (core/locks.py order: before any summary row and
        # the audit chain head): no ingest inserts while this inserts and re-summarizes.
        event_watermark_hold()
        before = list(
            UsageSummary.objects.select_for_update().filter(
                pk__in=selectors.summaries_for_event(event=original).values("pk")
            )
        )
        if any(s.closed_at is not None for s in before):  # closed since the check
            raise Conflict(
                f"{conflict.source}:{conflict.event_id} was billed on a finalized invoice "
                "meanwhile; correct it with a credit memo or an adjustment instead.",
                code=MeteringErrorCode.SUPERSESSION_BILLED,
                extra={"event_seq": original.seq},
            )
        replacement = UsageEvent.objects.create(
            source=new.source,
            event_id=new.event_id,
            customer_ref=new.customer_ref,
            customer_id=customer_id,
            metric_id=new.version.metric_id,
            metric_version_id=new.version.id,
            timestamp=new.timestamp,
            value=new.value,
            properties=new.properties,
            received_at=conflict.received_at,
            api_key_id=conflict.api_key_id,
        )
        supersession = EventSupersession(
            source=conflict.source,
            event_id=conflict.event_id,
            original_seq=original.seq,
            replacement_seq=replacement.seq,
            replacement_hash=new.content_hash,
            conflict=conflict,
            case_id=case_id if case_id is not None else conflict.case_id,
            reason=reason.strip(),
            actor_label=actor.label,
            superseded_at=timezone.now(),
        )
        supersession.full_clean()
        supersession.save()
        after = UsageSummary.objects.filter(
            customer_id=replacement.customer_id,
            metric_id=replacement.metric_id,
            period_start__lte=replacement.timestamp,
            period_end__gt=replacement.timestamp,
            closed_at__isnull=True,
        )
        _resummarize([*before, *after], actor=actor)
        audit_record(
            actor=actor,
            action=MeteringAction.USAGE_SUPERSEDE,
            obj=supersession,
            before={"event": selectors.event_fields(original)},
            after={"event": selectors.event_fields(replacement), "conflict_id": conflict.pk},
            reason=reason.strip(),
        )
    return supersession


def _resummarize(summaries: Iterable[UsageSummary], *, actor: Actor) -> None:
    """Recompute the windows of these summaries for their customer and metric."""
    windows = sorted(
        {(s.period_start, s.period_end, s.customer_id, s.metric.code) for s in summaries}
    )
    for start, end, customer_id, code in windows:
        usage_summarize_window(
            period_start=start,
            period_end=end,
            customer_ids=[customer_id],
            metric_codes=[code],
            actor=actor,
        )
