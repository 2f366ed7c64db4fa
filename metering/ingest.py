"""The ingest fast path's pure part: turn decoded events into valid candidates or
rejections, without the ORM. services.usage_ingest does the database side.

Each input shape (native, CloudEvents, Lago, CSV) is first mapped to the
canonical event dict by an adapter below, then validated by `validate_batch`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Annotated, Any

import fastjsonschema
import msgspec
import orjson

from metering.error_codes import MeteringErrorCode

QUANT = Decimal("0.000001")
_UNIX_RE = re.compile(r"^-?\d+(\.\d+)?$")
# A value has at most 22 digits before the point: with its 6 places that is 28 significant
# digits, what Python's decimal arithmetic (28 by default) carries exactly through summaries
# and rating. The column holds 24 (QUANTITY_DIGITS 30); 1e22 and more with a fraction made
# quantize() raise InvalidOperation, a 500 (issue 12).
MAX_INT = 10**22
MAX_VALUE = Decimal(MAX_INT)
MAX_NUMBER_TEXT = 100  # characters of a number written as text (longer ones are refused unread)
MAX_TIMESTAMP_TEXT = 64  # characters of a timestamp (ISO 8601 with nanoseconds is ~35)
MAX_LEN = {"source": 100, "event_id": 200, "customer_ref": 200, "metric": 100}

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
HELD = "held"


def event_key(source: str, event_id: str) -> str:
    """EventKey.key: source TAB event_id (validation refuses control characters in both, so the TAB
    is unambiguous and keys sort like (source, event_id))."""
    return f"{source}\t{event_id}"


@dataclass(slots=True)
class VersionInfo:
    id: int
    metric_id: int
    code: str
    effective_from: datetime
    aggregation: str
    value_property: str
    validate: Callable[[Any], Any]
    accepts_negative: bool = False


class Candidate(msgspec.Struct):
    """A valid event, ready to store. A msgspec Struct, not a dataclass: one is made per event,
    and a Struct is made in C (~100 ns against ~260 ns for a slotted dataclass's __init__)."""

    index: int
    source: str
    event_id: str
    customer_ref: str
    version: VersionInfo
    timestamp: datetime
    value: Decimal | None
    properties: dict[str, Any]
    content_hash: str
    raw: Any
    props_json: str = "{}"
    ts_iso: str = ""
    customer_id: int | None = None
    key: str = ""  # source + TAB + event_id: sorts like (source, event_id), ids carry no TAB


@dataclass(slots=True)
class Rejection:
    index: int
    source: str
    event_id: str
    code: str
    message: str
    raw: Any


@dataclass
class Validated:
    candidates: list[Candidate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # index -> (candidate index it duplicates, same content?)
    in_batch_duplicates: dict[int, tuple[int, bool]] = field(default_factory=dict)


_compiled: dict[tuple[int, bytes], Callable[[Any], Any]] = {}


def compiled_schema(version_id: int, schema: dict[str, Any]) -> Callable[[Any], Any]:
    """The JSON Schema of a metric version, compiled once per process."""
    key = (version_id, orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    fn = _compiled.get(key)
    if fn is None:
        fn = fastjsonschema.compile(schema) if schema else (lambda data: data)
        _compiled[key] = fn
    return fn


def _schema_problem(
    version: VersionInfo,
    props: dict[str, Any],
    props_json: bytes,
    memo: dict[tuple[int, bytes], str | None],
) -> str | None:
    """What the metric version's JSON Schema says is wrong with `props` (None: nothing).
    Producers repeat the same few property sets; the verdict on one is the same for every copy
    (sorted keys: equal objects give equal JSON), so it is kept per batch in `memo`."""
    key = (version.id, props_json)
    if key in memo:
        return memo[key]
    try:
        version.validate(props)
        problem = None
    except fastjsonschema.JsonSchemaValueException as exc:
        problem = exc.message
    memo[key] = problem
    return problem


class _Reject(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _text(event: dict[str, Any], name: str) -> str:
    raw = event.get(name)
    if type(raw) is str and 0 < len(raw) <= MAX_LEN[name] and not _CONTROL.search(raw):
        return raw  # the fast path: a plain, short string
    if raw is None or raw == "":
        raise _Reject(MeteringErrorCode.MISSING_FIELD, f"The event has no '{name}'.")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _Reject(MeteringErrorCode.INVALID_FIELD, f"'{name}' must be a string.")
    text = str(raw)
    if _CONTROL.search(text):
        raise _Reject(
            MeteringErrorCode.INVALID_FIELD,
            f"'{name}' contains a control character (NUL, tab, newline...).",
        )
    if len(text) > MAX_LEN[name]:
        raise _Reject(
            MeteringErrorCode.INVALID_FIELD, f"'{name}' is longer than {MAX_LEN[name]} characters."
        )
    return text


def parse_timestamp(raw: Any) -> datetime:
    """ISO 8601 with an offset (or Z), or Unix seconds."""
    if raw is None or raw == "":
        raise _Reject(MeteringErrorCode.MISSING_FIELD, "The event has no 'timestamp'.")
    if isinstance(raw, bool):
        raise _Reject(
            MeteringErrorCode.INVALID_TIMESTAMP, "'timestamp' must be ISO 8601 or Unix seconds."
        )
    if isinstance(raw, int | float):
        try:
            return datetime.fromtimestamp(raw, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise _Reject(
                MeteringErrorCode.INVALID_TIMESTAMP, f"'timestamp' {raw} is not a usable Unix time."
            ) from exc
    if isinstance(raw, str):
        if len(raw) > MAX_TIMESTAMP_TEXT:
            raise _Reject(
                MeteringErrorCode.INVALID_TIMESTAMP,
                f"'timestamp' {raw[:40]!r}... is {len(raw):,} characters long; send ISO 8601 "
                "or Unix seconds.",
            )
        if _UNIX_RE.match(raw):
            return parse_timestamp(float(raw) if "." in raw else int(raw))
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise _Reject(
                MeteringErrorCode.INVALID_TIMESTAMP, f"'timestamp' {raw[:60]!r} is not ISO 8601."
            ) from exc
        if ts.tzinfo is None:
            raise _Reject(
                MeteringErrorCode.INVALID_TIMESTAMP,
                f"'timestamp' {raw[:60]!r} has no time zone; add Z or an offset like +00:00.",
            )
        return ts.astimezone(UTC)
    raise _Reject(
        MeteringErrorCode.INVALID_TIMESTAMP, "'timestamp' must be ISO 8601 or Unix seconds."
    )


def parse_value(raw: Any, what: str) -> Decimal:
    if type(raw) is int and -MAX_INT < raw < MAX_INT:
        return Decimal(raw)  # the common case: a whole number
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise _Reject(MeteringErrorCode.INVALID_VALUE, f"{what} must be a number.")
    if isinstance(raw, int) or (isinstance(raw, str) and len(raw) > MAX_NUMBER_TEXT):
        # an int past MAX_INT (str() of one past 4,300 digits raises), or a number as long text
        raise _Reject(
            MeteringErrorCode.INVALID_VALUE,
            f"{what} is too large (at most 22 digits before the point and 6 after).",
        )
    try:
        value = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
    except InvalidOperation as exc:
        raise _Reject(
            MeteringErrorCode.INVALID_VALUE, f"{what} {str(raw)[:40]!r} is not a number."
        ) from exc
    if not value.is_finite():
        raise _Reject(MeteringErrorCode.INVALID_VALUE, f"{what} must be a finite number.")
    if abs(value) >= MAX_VALUE:
        raise _Reject(
            MeteringErrorCode.INVALID_VALUE,
            f"{what} is too large (at most 22 digits before the point).",
        )
    quantized = value.quantize(QUANT, context=_QUANTIZE)
    if quantized != value:
        raise _Reject(MeteringErrorCode.INVALID_VALUE, f"{what} has more than 6 decimal places.")
    return quantized


# Enough digits for any value under MAX_VALUE with 6 places: quantize() never raises.
_QUANTIZE = Context(prec=40)


def content_hash(
    customer_ref: str, metric: str, ts_iso: str, value: Decimal | None, props_json: bytes
) -> str:
    """What tells a harmless redelivery from a conflicting one (same instant in any offset hashes the same:
    `ts_iso` is the UTC ISO form)."""
    return _hash(customer_ref, metric, ts_iso, _value_text(value), props_json)


def _value_text(value: Decimal | None) -> str | None:
    """The value as content_hash sees it (1.50 and 1.5 are the same value)."""
    return None if value is None else _normal_text(value)


def _normal_text(value: Decimal) -> str:
    return str(value.normalize())


def _hash(
    customer_ref: str, metric: str, ts_iso: str, value_text: str | None, props_json: bytes
) -> str:
    """content_hash with the value already in its normalised text form."""
    head = orjson.dumps([customer_ref, metric, ts_iso, value_text])
    return _blake2b(head + props_json, digest_size=16).hexdigest()


_blake2b = hashlib.blake2b


def _pick_version(versions: list[VersionInfo], ts: datetime, code: str) -> VersionInfo:
    for version in versions:  # newest effective_from first
        if version.effective_from <= ts:
            return version
    raise _Reject(
        MeteringErrorCode.METRIC_NOT_EFFECTIVE,
        f"Metric '{code}' has no version in force at {ts.isoformat()}; its first starts "
        f"{versions[-1].effective_from.isoformat()}.",
    )


def _ids(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """source, event_id, customer_ref and metric: one check for the common case (four short plain
    strings without control characters), else field by field for the exact error."""
    get = event.get
    source, event_id, ref, code = get("source"), get("event_id"), get("customer_ref"), get("metric")
    if (
        type(source) is str
        and type(event_id) is str
        and type(ref) is str
        and type(code) is str
        and 0 < len(source) <= MAX_LEN["source"]
        and 0 < len(event_id) <= MAX_LEN["event_id"]
        and 0 < len(ref) <= MAX_LEN["customer_ref"]
        and 0 < len(code) <= MAX_LEN["metric"]
        and not _CONTROL.search(source + event_id + ref + code)
    ):
        return source, event_id, ref, code
    return (
        _text(event, "source"),
        _text(event, "event_id"),
        _text(event, "customer_ref"),
        _text(event, "metric"),
    )


def _utc_z_form(raw: str) -> bool:
    """YYYY-MM-DDTHH:MM:SS.ffffffZ or YYYY-MM-DDTHH:MM:SSZ (the separators checked, at 4, 7, 10, 13
    and 16; fromisoformat checks the digits). Other forms fromisoformat takes (compact time, week
    dates, other fractions) are not copied through."""
    n = len(raw)
    return (n == 20 or n == 27 and raw[19] == ".") and raw[-1] == "Z" and raw[4:17:3] == "--T::"


def _timestamp(raw: Any, ts_cache: dict[Any, tuple[datetime, str]]) -> tuple[datetime, str]:
    """(UTC datetime, its ISO form): ISO 8601 with a zone straight through fromisoformat, the rest
    (Unix seconds, errors) through parse_timestamp. Producers often repeat a timestamp within a
    batch: each raw string is parsed once per batch. The ISO form of a _utc_z_form string is
    taken from the string itself (isoformat() costs more than the rest of the timestamp's
    handling); it is the same text."""
    if type(raw) is not str:
        parsed = parse_timestamp(raw)
        return parsed, parsed.isoformat()
    cached = ts_cache.get(raw)
    if cached is not None:
        return cached
    ts: datetime | None = None
    if len(raw) > 10 and raw[4] == "-":  # not Unix seconds
        try:
            ts = _fromisoformat(raw)
        except ValueError:
            ts = None
        if ts is not None and ts.tzinfo is not UTC:
            ts = None if ts.tzinfo is None else ts.astimezone(UTC)
    if ts is None:
        ts = parse_timestamp(raw)  # the exact error, or Unix seconds
        cached = (ts, ts.isoformat())
    elif _utc_z_form(raw):
        cached = (ts, f"{raw[:26]}+00:00" if ts.microsecond else f"{raw[:19]}+00:00")
    else:
        cached = (ts, ts.isoformat())
    ts_cache[raw] = cached
    return cached


_fromisoformat = datetime.fromisoformat


def _value(raw: Any, what: str, memo: dict[int, tuple[Decimal, str]]) -> tuple[Decimal, str]:
    """(value, its normalised text for the content hash). A batch repeats the same few whole
    numbers: each is converted once per batch."""
    if type(raw) is int:
        known = memo.get(raw)
        if known is not None:
            return known
        value = parse_value(raw, what)
        known = memo[raw] = (value, _normal_text(value))
        return known
    value = parse_value(raw, what)
    return value, _normal_text(value)


@dataclass(slots=True)
class _BatchContext:
    """What every event of a batch is checked against, and what its events repeat, worked out
    once per batch: parsed timestamps, schema verdicts per (version, properties JSON) and each
    whole-number value as (Decimal, normalised text)."""

    catalog: dict[str, list[VersionInfo]]
    oldest: datetime
    newest: datetime
    timestamps: dict[Any, tuple[datetime, str]] = field(default_factory=dict)
    schema: dict[tuple[int, bytes], str | None] = field(default_factory=dict)
    values: dict[int, tuple[Decimal, str]] = field(default_factory=dict)


def _checked(
    index: int,
    source: str,
    event_id: str,
    customer_ref: str,
    code: str,
    raw_ts: Any,
    raw_value: Any,
    props: Any,
    raw: Any,
    ctx: _BatchContext,
) -> Candidate:
    """The per-event rules, once for every input shape: the event's timestamp, window, metric
    version, value and properties; its ids are already plain, short strings without control
    characters. Raises _Reject with the event's code and message."""
    ts, ts_iso = _timestamp(raw_ts, ctx.timestamps)
    if ts < ctx.oldest:
        raise _Reject(
            MeteringErrorCode.EVENT_TOO_OLD,
            f"The event is from {ts.isoformat()}, before the accepted window starting "
            f"{ctx.oldest.isoformat(timespec='seconds')}.",
        )
    if ts > ctx.newest:
        raise _Reject(
            MeteringErrorCode.EVENT_IN_FUTURE,
            f"The event is from {ts.isoformat()}, more than the allowed margin in the future.",
        )
    versions = ctx.catalog.get(code)
    if not versions:
        raise _Reject(MeteringErrorCode.UNKNOWN_METRIC, f"There is no metric with code '{code}'.")
    version = versions[0] if versions[0].effective_from <= ts else _pick_version(versions, ts, code)
    if props is None:
        props = {}
    elif type(props) is not dict and not isinstance(props, dict):
        raise _Reject(MeteringErrorCode.INVALID_FIELD, "'properties' must be a JSON object.")
    value: Decimal | None = None
    value_text: str | None = None
    aggregation = version.aggregation
    if raw_value is not None and raw_value != "":
        value, value_text = _value(raw_value, "'value'", ctx.values)
    elif aggregation in ("sum", "max", "latest"):
        prop = props.get(version.value_property)
        if prop is not None and prop != "":
            value, value_text = _value(prop, f"Property '{version.value_property}'", ctx.values)
        else:
            raise _Reject(
                MeteringErrorCode.VALUE_REQUIRED,
                f"Metric '{code}' ({aggregation}) needs a value: send 'value' or "
                f"property '{version.value_property}'.",
            )
    if value is not None and value < 0 and not version.accepts_negative:
        raise _Reject(
            MeteringErrorCode.NEGATIVE_VALUE,
            f"Metric '{code}' does not accept negative values; the event's value is {value_text}.",
        )
    if aggregation == "unique_count" and props.get(version.value_property) in (None, ""):
        raise _Reject(
            MeteringErrorCode.VALUE_REQUIRED,
            f"Metric '{code}' counts distinct values of property '{version.value_property}', "
            "which the event lacks.",
        )
    try:
        props_json = orjson.dumps(props, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise _Reject(
            MeteringErrorCode.INVALID_FIELD, f"'properties' cannot be stored: {exc}."
        ) from exc
    problem = ctx.schema.get((version.id, props_json), _UNSEEN)
    if problem is _UNSEEN:
        problem = _schema_problem(version, props, props_json, ctx.schema)
    if problem is not None:
        raise _Reject(
            MeteringErrorCode.SCHEMA_VIOLATION,
            f"'properties' do not match metric '{code}': {problem}.",
        )
    if b"\\u0000" in props_json:
        raise _Reject(
            MeteringErrorCode.INVALID_FIELD,
            "'properties' contain a NUL (\\u0000) character, which cannot be stored.",
        )
    return Candidate(
        index,
        source,
        event_id,
        customer_ref,
        version,
        ts,
        value,
        props,
        _blake2b(
            orjson.dumps([customer_ref, code, ts_iso, value_text]) + props_json, digest_size=16
        ).hexdigest(),  # _hash, written out: it runs once per event
        raw,
        props_json.decode(),
        ts_iso,
    )


_UNSEEN = object()


def validate_one(index: int, event: Any, raw: Any, ctx: _BatchContext) -> Candidate:
    """The general path: any decoded event (a dict from orjson or an adapter)."""
    if type(event) is not dict and not isinstance(event, dict):
        raise _Reject(MeteringErrorCode.EVENT_MALFORMED, "The event is not a JSON object.")
    if "_reject" in event:  # an adapter found the input shape broken
        raise _Reject(*event["_reject"])
    source, event_id, customer_ref, code = _ids(event)
    get = event.get
    return _checked(
        index,
        source,
        event_id,
        customer_ref,
        code,
        get("timestamp"),
        get("value"),
        get("properties"),
        raw,
        ctx,
    )


_INT64_MIN, _UINT64_END = -(2**63), 2**64
_UNSET = msgspec.UNSET


def typed_candidate(index: int, ev: NativeEvent, ctx: _BatchContext) -> Candidate | None:
    """The candidate validate_one would make of a typed event, or None: then the general path
    decides (and words the rejection), from the event as the general decoder would have read it.

    msgspec has checked the ids' types and lengths while decoding; what it cannot say is left
    here: ids with a control (or any unprintable) character, and whole numbers past 64 bits
    (msgspec keeps them as int, orjson reads them as float) go the general way."""
    source, event_id, ref, code = ev.source, ev.event_id, ev.customer_ref, ev.metric
    if not (source + event_id + ref + code).isprintable():
        return None
    raw_ts, value, props = ev.timestamp, ev.value, ev.properties
    if type(value) is int and not _INT64_MIN <= value < _UINT64_END:
        return None
    try:
        return _checked(
            index,
            source,
            event_id,
            ref,
            code,
            None if raw_ts is _UNSET else raw_ts,
            None if value is _UNSET else value,
            None if props is _UNSET else props,
            ev,
            ctx,
        )
    except _Reject:
        return None


def validate_batch(
    items: Iterable[tuple[Any, Any]],
    catalog: dict[str, list[VersionInfo]],
    *,
    now: datetime,
    max_age: timedelta,
    max_future: timedelta,
    field_names: dict[str, str] | None = None,
) -> Validated:
    """Validate (event, raw payload) pairs: typed NativeEvents first the typed way, anything else
    (or a typed event that does not pass) the general way. A later copy of a key in the batch is a
    duplicate. `field_names`: how the input format names our fields, for rejection messages."""
    out = Validated()
    ctx = _BatchContext(catalog, now - max_age, now + max_future)
    seen: dict[str, Candidate] = {}
    for index, (event, raw) in enumerate(items):
        cand = typed_candidate(index, event, ctx) if type(event) is NativeEvent else None
        if cand is None:
            if type(event) is NativeEvent:
                event = raw = as_sent(event)
            try:
                cand = validate_one(index, event, raw, ctx)
            except _Reject as rej:
                source = event.get("source") if isinstance(event, dict) else None
                event_id = event.get("event_id") if isinstance(event, dict) else None
                out.rejections.append(
                    Rejection(
                        index,
                        _short(source, 100),
                        _short(event_id, 200),
                        rej.code,
                        renamed(rej.message, field_names).replace("\x00", "\\u0000")
                        if field_names
                        else rej.message.replace("\x00", "\\u0000"),
                        raw,
                    )
                )
                continue
        key = cand.key = event_key(cand.source, cand.event_id)
        first = seen.get(key)
        if first is not None:
            out.in_batch_duplicates[index] = (first.index, first.content_hash == cand.content_hash)
            continue
        seen[key] = cand
        out.candidates.append(cand)
    return out


def _short(raw: Any, n: int) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return ""
    return str(raw).replace("\x00", "")[:n]


# --- the native batch's typed decoding ------------------------------------------------
#
# A native batch (`{"events": [...]}`) whose events have only the canonical fields, of the
# canonical JSON types, is decoded by msgspec straight into NativeEvent structs: the field
# types and lengths are checked in C while decoding. Each struct then takes the same rules as
# every other event (_checked, through typed_candidate); one the typed way does not take is
# turned back into the dict that was sent and takes the general path, which gives the exact
# outcome. A batch msgspec refuses (bad JSON, an extra field, a wrong type) is decoded by
# orjson and takes the general path whole. Tests hold both ways to the same candidates,
# rejections and stored raw payloads (tests/metering/test_fast_path.py).
#
# The timestamp stays a string here, parsed by datetime.fromisoformat like the general path's:
# msgspec's own datetime decoding rounds digits past the microsecond where fromisoformat drops
# them, and takes a lowercase "z" that the general path refuses, so the two would store
# different timestamps (and content hashes) for the same event (docs/decisions.md, 15).


class NativeEvent(msgspec.Struct, forbid_unknown_fields=True):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LEN["event_id"])]
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LEN["source"])]
    customer_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LEN["customer_ref"])]
    metric: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LEN["metric"])]
    # UNSET: a field the event did not have (as_sent leaves it out; null stays null)
    timestamp: str | int | float | None | msgspec.UnsetType = msgspec.UNSET
    value: int | float | str | None | msgspec.UnsetType = msgspec.UNSET
    properties: dict[str, Any] | None | msgspec.UnsetType = msgspec.UNSET


class _NativeBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[NativeEvent]


_native_decoder = msgspec.json.Decoder(_NativeBatch)


def decode_native(body: bytes) -> list[NativeEvent] | None:
    """The events of a canonical native batch, or None (the general path decodes it)."""
    try:
        return _native_decoder.decode(body).events
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        # ValidationError included; nested ~1,000 deep; invalid UTF-8 in a string (orjson says
        # where, for the 400)
        return None


def as_sent(ev: NativeEvent) -> Any:
    """The event as the general path decodes it (orjson's numbers: an integer past 64 bits
    becomes a float there), without the fields it did not have."""
    return orjson.loads(msgspec.json.encode(ev))


# --- adapters: each input shape to the canonical event -----------------------------


def from_cloudevent(ce: Any) -> Any:
    """CloudEvents 1.0: id→event_id, source, subject→customer_ref, type→metric, time, data→value/properties.

    `data` may be an object ({"value": 3, ...other properties}) or a bare number (the value).
    """
    if not isinstance(ce, dict):
        return ce
    if ce.get("specversion") != "1.0":
        return {
            "source": ce.get("source"),
            "event_id": ce.get("id"),
            "_reject": (MeteringErrorCode.EVENT_MALFORMED, "A CloudEvent needs specversion '1.0'."),
        }
    data = ce.get("data")
    value = None
    properties: Any = {}
    if isinstance(data, dict):
        properties = {k: v for k, v in data.items() if k != "value"}
        value = data.get("value")
        if isinstance(data.get("properties"), dict) and len(properties) == 1:
            properties = data["properties"]
    elif data is not None:
        value = data
    event = {
        "event_id": ce.get("id"),
        "source": ce.get("source"),
        "customer_ref": ce.get("subject"),
        "metric": ce.get("type"),
        "timestamp": ce.get("time"),
        "value": value,
        "properties": properties,
    }
    if event["timestamp"] is None or event["timestamp"] == "":
        # `time` is optional in CloudEvents: the event takes its receipt time (as Lago's do), and
        # the intake service says so in its outcome.
        event["timestamp"] = datetime.now(UTC).isoformat()
        event[TIME_FROM_RECEIPT] = True
    return event


TIME_FROM_RECEIPT = "_time_from_receipt"  # marks a canonical event stamped with its receipt time

# Our field names as CloudEvents calls them: rejections of CloudEvents name these.
CLOUDEVENT_NAMES = {
    "event_id": "id",
    "customer_ref": "subject",
    "metric": "type",
    "timestamp": "time",
}


def renamed(message: str, names: dict[str, str]) -> str:
    """A rejection message with the quoted field names of another format ('customer_ref' ->
    'subject'): every message quotes the field it is about."""
    for ours, theirs in names.items():
        message = message.replace(f"'{ours}'", f"'{theirs}'")
    return message


LAGO_SOURCE = "lago"
MAX_DEPTH = 64  # levels of arrays and objects in an event the Lago answer echoes


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` (decoded JSON) has arrays or objects nested more than `limit` deep;
    without recursion, so any depth is measured."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def from_lago(ev: Any) -> Any:
    """Lago's event: transaction_id, external_subscription_id | external_customer_id, code, timestamp, properties."""
    if not isinstance(ev, dict):
        return ev
    if nests_deeper(ev, MAX_DEPTH):  # Lago's answer echoes the event: refuse it before storing
        return {
            "source": LAGO_SOURCE,
            "event_id": ev.get("transaction_id"),
            "_reject": (
                MeteringErrorCode.EVENT_MALFORMED,
                f"The event nests deeper than {MAX_DEPTH} levels.",
            ),
        }
    ref = ev.get("external_subscription_id") or ev.get("external_customer_id")
    ts = ev.get("timestamp")
    if ts is None or ts == "":
        ts = datetime.now(
            UTC
        ).isoformat()  # Lago stamps events without a timestamp with the receipt time
    props = ev.get("properties")
    value = None
    amount = ev.get("precise_total_amount_cents")
    if isinstance(props, dict) and amount not in (None, ""):
        props = {**props, "precise_total_amount_cents": amount}
    elif props is None and amount not in (None, ""):
        props = {"precise_total_amount_cents": amount}
    return {
        "event_id": ev.get("transaction_id"),
        "source": LAGO_SOURCE,
        "customer_ref": ref,
        "metric": ev.get("code"),
        "timestamp": ts,
        "value": value,
        "properties": props,
    }
