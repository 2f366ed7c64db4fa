"""The dead letter: rejected events and refused requests, kept with what could be read of them."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from core import pgcopy
from core.actors import Actor
from core.models import ApiKey
from exceptions.services import (
    AuditSpec,
    CaseOpening,
    audit_record_many,
    cases_lock,
    cases_open_or_update_many,
)
from metering import ingest
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringCaseKind
from metering.models import (
    RejectedEvent,
)
from metering.services.tallies import _tally_add


def _rejected_openings(rejections: list[ingest.Rejection]) -> list[CaseOpening]:
    """One usage_rejected case per source and code the rejections name."""
    groups: dict[tuple[str, str], list[ingest.Rejection]] = defaultdict(list)
    for rej in rejections:
        groups[(rej.source, rej.code)].append(rej)
    return [
        CaseOpening(
            kind=MeteringCaseKind.REJECTED,
            fingerprint=rejected_fingerprint(source, code),
            title=f"Usage events from {source or 'an unidentified source'} rejected: {code}",
            error_code=code,
            error_message=rejs[0].message,
            occurrences=len(rejs),
            details={"source": source, "code": code, "last_event_id": rejs[-1].event_id},
        )
        for (source, code), rejs in sorted(groups.items())
    ]


def _dead_letter(
    rejections: list[ingest.Rejection],
    *,
    case_ids: dict[str, int],
    api_key_id: int | None,
    now: datetime,
) -> list[RejectedEvent]:
    """The dead letter's rows, each on the case `case_ids` names for its source and code (opened
    by the caller with cases_open_or_update_many, from _rejected_openings)."""
    rows: list[RejectedEvent] = []
    for rej in rejections:
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
                case_id=case_ids[rejected_fingerprint(rej.source, rej.code)],
            )
        )
    if connection.vendor == "postgresql" and len(rows) > 1:
        # One COPY (bulk_create's value preparation cost seconds for 10,000 rows); the rows
        # come back without pks (only dead_letter_request, one row, reads its pk).
        with connection.cursor() as cur:
            pgcopy.copy_rows(
                cur,
                table=RejectedEvent._meta.db_table,
                columns=_REJECTED_COLUMNS,
                rows=[
                    (
                        now.isoformat(),
                        r.api_key_id,
                        r.source,
                        r.event_id,
                        r.code,
                        r.message,
                        None if r.raw is None else orjson.dumps(r.raw).decode(),
                        r.raw_text,
                        r.status,
                        "",
                        r.case_id,
                    )
                    for r in rows
                ],
            )
        return rows
    return RejectedEvent.objects.bulk_create(rows, batch_size=1000)


_REJECTED_COLUMNS = (
    "received_at",
    "api_key_id",
    "source",
    "event_id",
    "code",
    "message",
    "raw",
    "raw_text",
    "status",
    "resubmission_outcome",
    "case_id",
)


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
    except TypeError:  # nested past orjson's 255 levels, or not JSON: flat text, no recursion
        return None, _flat_text(raw)
    if "\\u0000" in text:
        return None, text
    return raw, ""


FLAT_TEXT_LIMIT = 1_000_000  # characters of a payload kept as text


def _flat_text(raw: Any, limit: int = FLAT_TEXT_LIMIT) -> str:
    """JSON-like text of a payload orjson cannot write (nested past 255 levels, or holding other
    types), written with an explicit stack: any depth, never a RecursionError (repr() recursed).
    Cut at `limit` characters; NUL escaped (PostgreSQL text holds none)."""
    out: list[str] = []
    size = 0
    stack: list[Any] = [raw]
    while stack and size < limit:
        item = stack.pop()
        if isinstance(item, _Literal):
            piece = item.text
        elif isinstance(item, dict):
            piece = "{"
            parts: list[Any] = [_Literal("}")]
            for n, (key, value) in enumerate(reversed(list(item.items()))):
                parts.append(value)
                parts.append(_Literal(orjson.dumps(str(key)).decode() + ":"))
                if n < len(item) - 1:
                    parts.append(_Literal(","))
            stack.extend(parts)
        elif isinstance(item, list | tuple):
            piece = "["
            parts = [_Literal("]")]
            for n, value in enumerate(reversed(item)):
                parts.append(value)
                if n < len(item) - 1:
                    parts.append(_Literal(","))
            stack.extend(parts)
        else:
            try:
                piece = orjson.dumps(item).decode()
            except TypeError:
                piece = orjson.dumps(str(item)).decode()
        out.append(piece)
        size += len(piece)
    return "".join(out)[:limit].replace("\x00", "\\u0000")


class _Literal:
    """Text _flat_text writes as it is (brackets, separators, keys)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def dead_letter_request(
    *, code: str, message: str, raw: Any, actor: Actor, api_key: ApiKey | None, source: str = ""
) -> RejectedEvent:
    """Keep a request nothing could be read from (not JSON, wrong shape, too large) as one dead letter."""
    now = timezone.now()
    rejection = ingest.Rejection(0, source, "", code, message, raw)
    openings = _rejected_openings([rejection])
    with transaction.atomic():
        # core/locks.py's order: the control totals row, the case, the audit chain head
        _tally_add({(source, now.astimezone(UTC).date().isoformat()): {"rejected": 1}})
        cases_lock(fingerprints=[o.fingerprint for o in openings])
        cases = cases_open_or_update_many(openings=openings, actor=actor, now=now)
        rejected = _dead_letter(
            [rejection],
            case_ids=cases.case_ids,
            api_key_id=api_key.pk if api_key else None,
            now=now,
        )[0]
        refused = AuditSpec.of(
            rejected,
            MeteringAction.USAGE_INGEST_REFUSED,
            after={"code": code},
            reason=message[:500],
        )
        audit_record_many(actor=actor, entries=[*cases.audit, refused])
    return rejected


def rejected_fingerprint(source: str, code: str) -> str:
    return f"metering:rejected:{source}:{code}"
