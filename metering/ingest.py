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
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import fastjsonschema
import msgspec
import orjson

from metering import error_codes as codes

QUANT = Decimal("0.000001")
_UNIX_RE = re.compile(r"^-?\d+(\.\d+)?$")
MAX_INT = 10**24
MAX_VALUE = Decimal(MAX_INT)
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
        raise _Reject(codes.MISSING_FIELD, f"The event has no '{name}'.")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _Reject(codes.INVALID_FIELD, f"'{name}' must be a string.")
    text = str(raw)
    if _CONTROL.search(text):
        raise _Reject(
            codes.INVALID_FIELD, f"'{name}' contains a control character (NUL, tab, newline...)."
        )
    if len(text) > MAX_LEN[name]:
        raise _Reject(codes.INVALID_FIELD, f"'{name}' is longer than {MAX_LEN[name]} characters.")
    return text


def parse_timestamp(raw: Any) -> datetime:
    """ISO 8601 with an offset (or Z), or Unix seconds."""
    if raw is None or raw == "":
        raise _Reject(codes.MISSING_FIELD, "The event has no 'timestamp'.")
    if isinstance(raw, bool):
        raise _Reject(codes.INVALID_TIMESTAMP, "'timestamp' must be ISO 8601 or Unix seconds.")
    if isinstance(raw, int | float):
        try:
            return datetime.fromtimestamp(raw, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise _Reject(
                codes.INVALID_TIMESTAMP, f"'timestamp' {raw} is not a usable Unix time."
            ) from exc
    if isinstance(raw, str):
        if _UNIX_RE.match(raw):
            return parse_timestamp(float(raw) if "." in raw else int(raw))
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError as exc:
            raise _Reject(
                codes.INVALID_TIMESTAMP, f"'timestamp' {raw[:60]!r} is not ISO 8601."
            ) from exc
        if ts.tzinfo is None:
            raise _Reject(
                codes.INVALID_TIMESTAMP,
                f"'timestamp' {raw[:60]!r} has no time zone; add Z or an offset like +00:00.",
            )
        return ts.astimezone(UTC)
    raise _Reject(codes.INVALID_TIMESTAMP, "'timestamp' must be ISO 8601 or Unix seconds.")


def parse_value(raw: Any, what: str) -> Decimal:
    if type(raw) is int and -MAX_INT < raw < MAX_INT:
        return Decimal(raw)  # the common case: a whole number
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise _Reject(codes.INVALID_VALUE, f"{what} must be a number.")
    try:
        value = Decimal(str(raw).strip()) if not isinstance(raw, Decimal) else raw
    except InvalidOperation as exc:
        raise _Reject(codes.INVALID_VALUE, f"{what} {str(raw)[:40]!r} is not a number.") from exc
    if not value.is_finite():
        raise _Reject(codes.INVALID_VALUE, f"{what} must be a finite number.")
    if abs(value) >= MAX_VALUE:
        raise _Reject(
            codes.INVALID_VALUE, f"{what} is too large (at most 24 digits before the point)."
        )
    quantized = value.quantize(QUANT)
    if quantized != value:
        raise _Reject(codes.INVALID_VALUE, f"{what} has more than 6 decimal places.")
    return quantized


def content_hash(
    customer_ref: str, metric: str, ts_iso: str, value: Decimal | None, props_json: bytes
) -> str:
    """What tells a harmless redelivery from a conflicting one (same instant in any offset hashes the same:
    `ts_iso` is the UTC ISO form)."""
    return _hash(customer_ref, metric, ts_iso, _value_text(value), props_json)


def _value_text(value: Decimal | None) -> str | None:
    """The value as content_hash sees it (1.50 and 1.5 are the same value)."""
    return None if value is None else str(value.normalize())


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
        codes.METRIC_NOT_EFFECTIVE,
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


def _z_iso(ts: datetime, raw: str) -> str:
    """ts.isoformat() of a timestamp parsed from a _utc_z_form string, taken from that string
    (isoformat() is a large part of the per-event cost)."""
    return f"{raw[:26]}+00:00" if ts.microsecond else f"{raw[:19]}+00:00"


def _utc_iso(ts: datetime, raw: str) -> str:
    """ts.isoformat() of a UTC timestamp, from the raw string when it is in _utc_z_form."""
    return _z_iso(ts, raw) if _utc_z_form(raw) else ts.isoformat()


def _timestamp(raw: Any, ts_cache: dict[Any, tuple[datetime, str]] | None) -> tuple[datetime, str]:
    """(UTC datetime, its ISO form): ISO 8601 with a zone straight through fromisoformat, the rest
    (Unix seconds, errors) through parse_timestamp."""
    if type(raw) is not str:
        ts = parse_timestamp(raw)
        return ts, ts.isoformat()
    cached = ts_cache.get(raw) if ts_cache is not None else None
    if cached is not None:
        return cached
    ts = None
    if len(raw) > 10 and raw[4] == "-":  # not Unix seconds
        try:
            ts = datetime.fromisoformat(raw)
        except ValueError:
            ts = None
        if ts is not None and ts.tzinfo is not UTC:
            ts = None if ts.tzinfo is None else ts.astimezone(UTC)
    if ts is None:
        ts = parse_timestamp(raw)  # the exact error, or Unix seconds
        cached = (ts, ts.isoformat())
    else:
        cached = (ts, _utc_iso(ts, raw))
    if ts_cache is not None:
        ts_cache[raw] = cached
    return cached


def validate_one(
    index: int,
    event: Any,
    raw: Any,
    catalog: dict[str, list[VersionInfo]],
    oldest: datetime,
    newest: datetime,
    ts_cache: dict[Any, tuple[datetime, str]] | None,
    schema_memo: dict[tuple[int, bytes], str | None],
) -> Candidate:
    if type(event) is not dict and not isinstance(event, dict):
        raise _Reject(codes.EVENT_MALFORMED, "The event is not a JSON object.")
    if "_reject" in event:  # an adapter found the input shape broken
        raise _Reject(*event["_reject"])
    source, event_id, customer_ref, code = _ids(event)
    ts, ts_iso = _timestamp(event.get("timestamp"), ts_cache)
    if ts < oldest:
        raise _Reject(
            codes.EVENT_TOO_OLD,
            f"The event is from {ts.isoformat()}, before the accepted window starting "
            f"{oldest.isoformat(timespec='seconds')}.",
        )
    if ts > newest:
        raise _Reject(
            codes.EVENT_IN_FUTURE,
            f"The event is from {ts.isoformat()}, more than the allowed margin in the future.",
        )
    versions = catalog.get(code)
    if not versions:
        raise _Reject(codes.UNKNOWN_METRIC, f"There is no metric with code '{code}'.")
    version = versions[0] if versions[0].effective_from <= ts else _pick_version(versions, ts, code)
    props = event.get("properties")
    if props is None:
        props = {}
    elif type(props) is not dict and not isinstance(props, dict):
        raise _Reject(codes.INVALID_FIELD, "'properties' must be a JSON object.")
    raw_value = event.get("value")
    value: Decimal | None = None
    aggregation = version.aggregation
    if raw_value is not None and raw_value != "":
        value = parse_value(raw_value, "'value'")
    elif aggregation in ("sum", "max", "latest"):
        prop = props.get(version.value_property)
        if prop is not None and prop != "":
            value = parse_value(prop, f"Property '{version.value_property}'")
        else:
            raise _Reject(
                codes.VALUE_REQUIRED,
                f"Metric '{code}' ({aggregation}) needs a value: send 'value' or "
                f"property '{version.value_property}'.",
            )
    if aggregation == "unique_count" and props.get(version.value_property) in (None, ""):
        raise _Reject(
            codes.VALUE_REQUIRED,
            f"Metric '{code}' counts distinct values of property '{version.value_property}', "
            "which the event lacks.",
        )
    try:
        props_json = orjson.dumps(props, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise _Reject(codes.INVALID_FIELD, f"'properties' cannot be stored: {exc}.") from exc
    problem = _schema_problem(version, props, props_json, schema_memo)
    if problem is not None:
        raise _Reject(
            codes.SCHEMA_VIOLATION, f"'properties' do not match metric '{code}': {problem}."
        )
    if b"\\u0000" in props_json:
        raise _Reject(
            codes.INVALID_FIELD,
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
        content_hash(customer_ref, code, ts_iso, value, props_json),
        raw,
        props_json.decode(),
        ts_iso,
    )


def validate_batch(
    items: Iterable[tuple[Any, Any]],
    catalog: dict[str, list[VersionInfo]],
    *,
    now: datetime,
    max_age: timedelta,
    max_future: timedelta,
) -> Validated:
    """Validate (canonical event, raw payload) pairs; a later copy of a key in the batch is a duplicate."""
    out = Validated()
    oldest, newest = now - max_age, now + max_future
    seen: dict[str, Candidate] = {}
    ts_cache: dict[
        Any, tuple[datetime, str]
    ] = {}  # producers often repeat a timestamp within a batch
    memo = _BatchMemo()
    schema_memo = memo.schema
    for index, (event, raw) in enumerate(items):
        if type(event) is NativeEvent:
            cand = _native_candidate(index, event, catalog, oldest, newest, memo)
            if cand is None:  # not the common case: the general checks give the exact outcome
                event = raw = as_sent(event)
        else:
            cand = None
        try:
            if cand is None:
                cand = validate_one(
                    index, event, raw, catalog, oldest, newest, ts_cache, schema_memo
                )
        except _Reject as rej:
            source = event.get("source") if isinstance(event, dict) else None
            event_id = event.get("event_id") if isinstance(event, dict) else None
            out.rejections.append(
                Rejection(
                    index,
                    _short(source, 100),
                    _short(event_id, 200),
                    rej.code,
                    rej.message.replace("\x00", "\\u0000"),
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


# --- the native batch's fast path ------------------------------------------------------
#
# A native batch (`{"events": [...]}`) whose events have only the canonical fields, of the
# canonical JSON types, is decoded by msgspec straight into NativeEvent structs: the field
# types and lengths are checked in C while decoding. Each struct then goes through
# _native_candidate, one pass for the common event; anything it does not take (another
# timestamp form, a value that is not a whole number, a schema problem...) is turned back
# into the dict that was sent and takes the general checks above, which give the exact
# outcome. A batch msgspec refuses (bad JSON, an extra field, a wrong type) is decoded by
# orjson and takes the general checks whole. Tests hold both paths to the same candidates,
# rejections and stored raw payloads (tests/metering/test_fast_path.py).


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
    except msgspec.DecodeError:  # ValidationError included
        return None


def as_sent(ev: NativeEvent) -> Any:
    """The event as the general path decodes it (orjson's numbers: an integer past 64 bits
    becomes a float there), without the fields it did not have."""
    return orjson.loads(msgspec.json.encode(ev))


_fromisoformat = datetime.fromisoformat


def _py_native_candidate(
    index: int,
    ev: NativeEvent,
    catalog: dict[str, list[VersionInfo]],
    oldest: datetime,
    newest: datetime,
    memo: _BatchMemo,
) -> Candidate | None:
    """The candidate validate_one would make of this event, or None if it is not the common case:
    ids without control characters, a UTC timestamp (YYYY-MM-DDTHH:MM:SS.ffffffZ or whole seconds,
    YYYY-MM-DDTHH:MM:SSZ) inside the window, the newest metric version (not unique_count), a
    whole-number value or none, properties the schema passes. Runs once per event of a native
    batch: the checks are written out here rather than called (measured)."""
    source, event_id, ref, code, raw_ts = (
        ev.source,
        ev.event_id,
        ev.customer_ref,
        ev.metric,
        ev.timestamp,
    )
    if (
        type(raw_ts) is not str
        or not _utc_z_form(raw_ts)
        or not (source + event_id + ref + code).isprintable()  # no control characters, and
        # no other unprintable ones either (those take the general path, which keeps them)
    ):
        return None
    try:
        ts = _fromisoformat(raw_ts)
    except ValueError:
        return None
    if ts < oldest or ts > newest:
        return None
    versions = catalog.get(code)
    if not versions or versions[0].effective_from > ts:
        return None
    version = versions[0]
    aggregation = version.aggregation
    if aggregation == "unique_count":
        return None
    props = ev.properties
    if props is None or props is msgspec.UNSET:
        props = {}
    number = ev.value
    if number is None or number is msgspec.UNSET:
        if aggregation == "count":
            number = None
        else:
            number = props.get(version.value_property)
            if type(number) is not int:
                return None
    elif type(number) is not int:
        return None
    if number is None:
        value, value_text = None, None
    else:
        known = memo.values.get(number)
        if known is None:
            if not -MAX_INT < number < MAX_INT:
                return None
            value = Decimal(number)
            known = memo.values[number] = (value, _value_text(value))
        value, value_text = known
    try:
        props_json = orjson.dumps(props, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    if _schema_problem(version, props, props_json, memo.schema) is not None:
        return None
    if b"\\u0000" in props_json:
        return None
    ts_iso = _z_iso(ts, raw_ts)
    return Candidate(
        index,
        source,
        event_id,
        ref,
        version,
        ts,
        value,
        props,
        _hash(ref, code, ts_iso, value_text, props_json),
        ev,
        props_json.decode(),
        ts_iso,
    )


try:  # the same function in C (setup.py builds it; without a compiler, the Python one runs)
    from metering import _fastpath
except ImportError:  # pragma: no cover - the suite asserts the build (test_fast_path)
    _fastpath = None

if _fastpath is not None:
    _fastpath.configure(
        Candidate,
        orjson.dumps,
        orjson.OPT_SORT_KEYS,
        orjson.JSONEncodeError,
        msgspec.UNSET,
        Decimal,
        _value_text,
        _schema_problem,
        MAX_INT,
        UTC,
    )
    _native_candidate = _fastpath.native_candidate
else:
    _native_candidate = _py_native_candidate


@dataclass(slots=True)
class _BatchMemo:
    """What a batch's events repeat, worked out once per batch: schema verdicts per (version,
    properties JSON), and each whole-number value as (Decimal, normalised text)."""

    schema: dict[tuple[int, bytes], str | None] = field(default_factory=dict)
    values: dict[int, tuple[Decimal, str]] = field(default_factory=dict)


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
            "_reject": (codes.EVENT_MALFORMED, "A CloudEvent needs specversion '1.0'."),
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
    return {
        "event_id": ce.get("id"),
        "source": ce.get("source"),
        "customer_ref": ce.get("subject"),
        "metric": ce.get("type"),
        "timestamp": ce.get("time"),
        "value": value,
        "properties": properties,
    }


LAGO_SOURCE = "lago"


def from_lago(ev: Any) -> Any:
    """Lago's event: transaction_id, external_subscription_id | external_customer_id, code, timestamp, properties."""
    if not isinstance(ev, dict):
        return ev
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
