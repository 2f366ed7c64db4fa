"""Intake: from an ingest request's body to ingested events, for every way usage arrives over
HTTP (native batch, CloudEvents structured, batch and binary, Lago single and batch).

The views read the request (`IngestRequest`), call one function here and render its result.
This module decodes the body, refuses what cannot be read (malformed JSON, a wrong shape, an
unsupported media type, an empty or too large batch: a 4xx `AppError`, with the request kept
in the dead letter where something could be read of it) and hands the events to
`usage_ingest`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from django.conf import settings

from core.actors import Actor
from core.errors import AppError
from core.models import ApiKey
from metering import ingest
from metering.error_codes import MeteringErrorCode
from metering.services.dead_letter import dead_letter_request
from metering.ingest import TIME_FROM_RECEIPT
from metering.services.ingest import IngestCounts, IngestItem, IngestResult, usage_ingest

JSON = "application/json"
CE_STRUCTURED = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
RAW_KEPT = 1_000_000  # characters of an unreadable body kept in the dead letter


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What an ingest view read from its HTTP request."""

    body: bytes
    media_type: str  # lower case, without parameters ("" when the request named none)
    actor: Actor
    api_key: ApiKey | None
    # CloudEvents binary mode: the ce-* attributes (specversion, id, source, subject, type, time)
    ce_attributes: dict[str, str | None] | None = field(default=None)


def _refuse(
    request: IngestRequest, *, code: str, message: str, raw: Any, status: int, **extra: Any
) -> AppError:
    """Keep what could be read of a refused request in the dead letter, and build the 4xx error."""
    rejected = dead_letter_request(
        code=code, message=message, raw=raw, actor=request.actor, api_key=request.api_key
    )
    return AppError(message, code=code, status=status, extra={"rejected_id": rejected.pk, **extra})


def _malformed(request: IngestRequest, raw: Any, message: str) -> AppError:
    """400 malformed_request for a body of the wrong shape, kept in the dead letter."""
    return _refuse(
        request, code=MeteringErrorCode.MALFORMED_REQUEST, status=400, raw=raw, message=message
    )


def _body_text(request: IngestRequest) -> str:
    return request.body[:RAW_KEPT].decode("utf-8", errors="replace")


def _decode_json(request: IngestRequest) -> Any:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise _refuse(
            request,
            code=MeteringErrorCode.MALFORMED_REQUEST,
            status=400,
            message=f"The body is not valid JSON: {exc}.",
            raw=_body_text(request),
        ) from exc


def _check_batch_size(request: IngestRequest, events: list[Any], raw: Any) -> None:
    limit = settings.LEDGERLINE["MAX_BATCH_EVENTS"]
    if not events:
        raise AppError("The batch has no events.", code=MeteringErrorCode.EMPTY_BATCH, status=400)
    if len(events) > limit:
        raise _refuse(
            request,
            code=MeteringErrorCode.BATCH_TOO_LARGE,
            status=413,
            raw=raw,
            message=f"A request takes at most {limit:,} events; this one has {len(events):,}. "
            "Split it; the batch is kept in the dead letter.",
            limit=limit,
            received=len(events),
        )


def _header_value(raw: str | None) -> str | None:
    """A ce-* header's value as the HTTP binding sends it: percent-encoded UTF-8 (section 3.1.3.2:
    '%' and two hex digits; a '%' not followed by two hex digits stays as it is). Raises
    UnicodeDecodeError when the decoded bytes are not UTF-8."""
    if raw is None or "%" not in raw:
        return raw
    return unquote_to_bytes(raw).decode("utf-8")


def _binary_cloudevent(request: IngestRequest, attributes: dict[str, str | None]) -> IngestItem:
    """CloudEvents binary mode: the attributes came as ce-* headers, the body is `data`."""
    ce: dict[str, Any] = {}
    for name, raw in attributes.items():
        try:
            ce[name] = _header_value(raw)
        except UnicodeDecodeError:
            ce[name] = raw
            problem = (
                f"The ce-{name} header is not percent-encoded UTF-8 (the CloudEvents HTTP binding "
                "sends every attribute's UTF-8 bytes outside printable ASCII as %XX)."
            )
            return IngestItem(_refused_event(ce, problem), {**attributes, "data": None})
    data: Any = None
    if request.body:
        if not request.media_type:
            # SDKs send JSON data without a Content-Type when datacontenttype is not set.
            try:
                data = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                problem = (
                    "A binary-mode CloudEvent without a Content-Type must carry JSON data; send "
                    "its datacontenttype as the Content-Type header (text/plain for a bare number)."
                )
                raw_event = {**ce, "data": request.body.decode("utf-8", errors="replace")}
                return IngestItem(_refused_event(ce, problem), raw_event)
        elif request.media_type.endswith("json"):
            try:
                data = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                data = request.body.decode("utf-8", errors="replace")
        else:
            data = request.body.decode("utf-8", errors="replace")
    ce["data"] = data
    return IngestItem(ingest.from_cloudevent(ce), ce)


def _refused_event(ce: dict[str, Any], message: str) -> dict[str, Any]:
    """A canonical event the general path rejects as malformed, with `message`."""
    return {
        "source": ce.get("source"),
        "event_id": ce.get("id"),
        "_reject": (MeteringErrorCode.EVENT_MALFORMED, message),
    }


def _empty_result() -> IngestResult:
    """The answer to a batch with no events (the CloudEvents batch format allows one): nothing
    to store, nothing to record."""
    return IngestResult(
        results=[],
        counts=IngestCounts(received=0, accepted=0, duplicate=0, rejected=0, held=0),
        batch_id=uuid.uuid4().hex,
    )


def _note_receipt_times(
    items: Sequence[IngestItem | tuple[Any, Any]], result: IngestResult
) -> IngestResult:
    """Say so in the outcome of each CloudEvent that had no `time` and took its receipt time."""
    stamped = {
        i
        for i, (event, _) in enumerate(items)
        if isinstance(event, dict) and event.get(TIME_FROM_RECEIPT)
    }
    for outcome in result.results:
        if outcome["index"] in stamped and outcome["status"] != ingest.REJECTED:
            outcome["message"] = "The CloudEvent has no 'time': it takes its time of receipt."
    return result


def events_intake(*, request: IngestRequest) -> IngestResult:
    """`POST /api/v1/events`: a native batch, or CloudEvents 1.0 (structured, batch or binary)."""
    ctype = request.media_type
    items: list[IngestItem] | list[tuple[Any, Any]]
    if request.ce_attributes is not None:
        items = [_binary_cloudevent(request, request.ce_attributes)]
        channel = "cloudevents-binary"
    elif ctype == JSON:
        # The common batch is decoded into typed events (ingest.decode_native); any other (bad
        # JSON, wrong shape or types, extra fields, empty or too large) takes orjson.
        native = ingest.decode_native(request.body)
        if native and len(native) <= settings.LEDGERLINE["MAX_BATCH_EVENTS"]:
            items = [(e, e) for e in native]  # tuples: an IngestItem costs ~0.25 µs each
        else:
            doc = _decode_json(request)
            events = doc.get("events") if isinstance(doc, dict) else None
            if not isinstance(events, list):
                raise _malformed(
                    request, doc, 'The body must be a JSON object with an "events" list.'
                )
            _check_batch_size(request, events, doc)
            items = [IngestItem(e, e) for e in events]
        channel = "native"
    elif ctype == CE_STRUCTURED:
        doc = _decode_json(request)
        items = [IngestItem(ingest.from_cloudevent(doc), doc)]
        channel = "cloudevents"
    elif ctype == CE_BATCH:
        doc = _decode_json(request)
        if not isinstance(doc, list):
            raise _malformed(request, doc, "A CloudEvents batch must be a JSON array of events.")
        if not doc:
            return _empty_result()
        _check_batch_size(request, doc, doc)
        items = [IngestItem(ingest.from_cloudevent(ce), ce) for ce in doc]
        channel = "cloudevents-batch"
    else:
        raise _refuse(
            request,
            code=MeteringErrorCode.UNSUPPORTED_MEDIA_TYPE,
            status=415,
            raw=_body_text(request),
            message=f"Content type {ctype or '(none)'!r} is not accepted; send {JSON}, "
            f"{CE_STRUCTURED} or {CE_BATCH}.",
        )
    result = usage_ingest(
        items=items, actor=request.actor, api_key=request.api_key, channel=channel
    )
    if channel == "native":
        return result
    return _note_receipt_times(items, result)


@dataclass(frozen=True, slots=True)
class LagoIntake:
    """The outcome of a Lago request, with the events as Lago sent them (for its echo)."""

    result: IngestResult
    events: list[Any]


def _lago_doc(request: IngestRequest) -> Any:
    if request.media_type not in (JSON, ""):
        raise _refuse(
            request,
            code=MeteringErrorCode.UNSUPPORTED_MEDIA_TYPE,
            status=415,
            raw=request.body.decode("utf-8", "replace"),
            message="Send application/json.",
        )
    return _decode_json(request)


def _lago_ingest(request: IngestRequest, events: list[Any], channel: str) -> IngestResult:
    return usage_ingest(
        items=[IngestItem(ingest.from_lago(e), e) for e in events],
        actor=request.actor,
        api_key=request.api_key,
        channel=channel,
    )


def lago_event_intake(*, request: IngestRequest) -> LagoIntake:
    """Lago `POST /api/v1/events`: `{"event": {...}}`."""
    doc = _lago_doc(request)
    event = doc.get("event") if isinstance(doc, dict) else None
    if not isinstance(event, dict):
        raise _malformed(request, doc, 'The body must be {"event": {...}}.')
    return LagoIntake(_lago_ingest(request, [event], "lago"), [event])


def lago_batch_intake(*, request: IngestRequest) -> LagoIntake:
    """Lago `POST /api/v1/events/batch`: `{"events": [...]}`; no events is Lago's 422
    `no_events`."""
    doc = _lago_doc(request)
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        raise _malformed(request, doc, 'The body must be {"events": [...]}.')
    if not events:
        raise AppError(
            "No events.",
            code="validation_errors",
            status=422,
            extra={"error_details": {"events": ["no_events"]}},
        )
    _check_batch_size(request, events, doc)
    return LagoIntake(_lago_ingest(request, events, "lago-batch"), events)
