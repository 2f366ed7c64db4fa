"""The dead letter: rejected events and refused requests, kept with what could be read of them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.models import ApiKey
from exceptions.services import audit_record, case_open_or_update
from metering import ingest
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringCaseKind
from metering.models import (
    RejectedEvent,
)
from metering.services.tallies import _tally_add


def _dead_letter(
    rejections: list[ingest.Rejection], *, actor: Actor, api_key_id: int | None, now: datetime
) -> list[RejectedEvent]:
    groups: dict[tuple[str, str], list[ingest.Rejection]] = defaultdict(list)
    for rej in rejections:
        groups[(rej.source, rej.code)].append(rej)
    rows: list[RejectedEvent] = []
    for (source, code), rejs in sorted(groups.items()):
        case, _ = case_open_or_update(
            kind=MeteringCaseKind.REJECTED,
            fingerprint=rejected_fingerprint(source, code),
            title=f"Usage events from {source or 'an unidentified source'} rejected: {code}",
            actor=actor,
            error_code=code,
            error_message=rejs[0].message,
            occurrences=len(rejs),
            details={"source": source, "code": code, "last_event_id": rejs[-1].event_id},
        )
        for rej in rejs:
            raw_json, raw_text = _raw_for_storage(rej.raw)
            rows.append(
                RejectedEvent(
                    received_at=now,
                    api_key_id=api_key_id,
                    source=rej.source,
                    event_id=rej.event_id,
                    code=rej.code,
                    message=rej.message,
                    raw=raw_json,
                    raw_text=raw_text,
                    case=case,
                )
            )
    return RejectedEvent.objects.bulk_create(rows, batch_size=1000)


def _raw_for_storage(raw: Any) -> tuple[Any, str]:
    """(JSON, text) to keep of a payload. PostgreSQL stores no NUL in text or jsonb: such
    payloads are kept as their JSON text with NUL escaped."""
    if isinstance(raw, ingest.NativeEvent):
        raw = ingest.as_sent(raw)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return None, raw.replace("\x00", "\\u0000")
    try:
        text = orjson.dumps(raw).decode()
    except TypeError:
        return None, repr(raw)
    if "\\u0000" in text:
        return None, text
    return raw, ""


def dead_letter_request(
    *, code: str, message: str, raw: Any, actor: Actor, api_key: ApiKey | None, source: str = ""
) -> RejectedEvent:
    """Keep a request nothing could be read from (not JSON, wrong shape, too large) as one dead letter."""
    now = timezone.now()
    with transaction.atomic():
        # core/locks.py's order: the control totals row, the case, the audit chain head
        _tally_add({(source, now.astimezone(UTC).date().isoformat()): {"rejected": 1}})
        rejected = _dead_letter(
            [ingest.Rejection(0, source, "", code, message, raw)],
            actor=actor,
            api_key_id=api_key.pk if api_key else None,
            now=now,
        )[0]
        audit_record(
            actor=actor,
            action=MeteringAction.USAGE_INGEST_REFUSED,
            obj=rejected,
            after={"code": code},
            reason=message[:500],
        )
    return rejected


def rejected_fingerprint(source: str, code: str) -> str:
    return f"metering:rejected:{source}:{code}"
