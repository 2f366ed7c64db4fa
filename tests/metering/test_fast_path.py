"""The typed native path gives exactly what the general path gives (the content hash, stored with
every key, depends on the timestamp's ISO form), and the content hash is the one stored so far."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypedDict

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering import ingest


@pytest.mark.parametrize(
    "raw",
    [
        "2026-11-24T06:12:34.567000Z",
        "2026-11-24T06:12:34.000000Z",  # a zero fraction: isoformat() drops it
        "2026-11-24T06:12:34.567Z",
        "2026-11-24T06:12:34Z",
        "2026-11-24T06:12:34.567000+02:00",
        "2026-11-24T06:12:34.567000-00:30",
        "2026-11-24 06:12:34.567000+00:00",
        "2026-W48-2T06:12:34.567000Z",  # an ISO week date is not copied through
        "2026-11-24T061234.567000Z",
        "2026-11-24T061234.5Z",  # compact time, 20 characters like the whole-second form
        "2026-11-24T061234,0Z",
        "2026-11-24T06:12:34Z",
        "1763964754",
        "1763964754.25",
    ],
)
def test_the_fast_timestamp_is_the_general_one(raw: str) -> None:
    try:
        expected = ingest.parse_timestamp(raw)
    except ingest._Reject:
        with pytest.raises(ingest._Reject):
            ingest._timestamp(raw, {})
        return
    cache: dict[Any, tuple[datetime, str]] = {}
    assert ingest._timestamp(raw, cache) == (expected, expected.isoformat())
    assert ingest._timestamp(raw, cache) == (expected, expected.isoformat())  # from the cache


def test_a_naive_timestamp_is_refused_with_the_same_message() -> None:
    with pytest.raises(ingest._Reject) as fast:
        ingest._timestamp("2026-11-24T06:12:34.567000", {})
    assert fast.value.code == "invalid_timestamp"
    assert "has no time zone" in fast.value.message


# --- the typed native batch gives exactly what the general path gives ---------------------

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Window(TypedDict):
    """validate_batch's time window, passed to both paths alike."""

    now: datetime
    max_age: timedelta
    max_future: timedelta


SCHEMA = {
    "type": "object",
    "properties": {"units": {"type": "number"}, "region": {"enum": ["eu", "us", "ap"]}},
}


def _version(vid: int, code: str, aggregation: str, prop: str, frm: datetime) -> ingest.VersionInfo:
    return ingest.VersionInfo(
        id=vid,
        metric_id=vid,
        code=code,
        effective_from=frm,
        aggregation=aggregation,
        value_property=prop,
        validate=ingest.compiled_schema(vid, SCHEMA),
    )


CATALOG = {
    "api_calls": [_version(1, "api_calls", "sum", "units", datetime(2020, 1, 1, tzinfo=UTC))],
    "logins": [_version(2, "logins", "count", "", datetime(2020, 1, 1, tzinfo=UTC))],
    "seats": [_version(3, "seats", "unique_count", "user", datetime(2020, 1, 1, tzinfo=UTC))],
    "peak": [  # a second version from an hour ago: older events take the first
        _version(5, "peak", "max", "units", NOW - timedelta(hours=1)),
        _version(4, "peak", "max", "units", datetime(2020, 1, 1, tzinfo=UTC)),
    ],
}

_ids = st.one_of(
    st.sampled_from(["e1", "e2", "e3", "acct-1", "x" * 200]),
    st.text(min_size=0, max_size=6),  # control characters, empty strings, odd code points
    st.integers(-5, 5),
    st.none(),
)
_times = st.one_of(
    st.integers(-7200, 600).map(
        lambda s: (NOW + timedelta(seconds=s, microseconds=123456))
        .isoformat()
        .replace("+00:00", "Z")
    ),
    st.integers(-7200, 600).map(lambda s: (NOW + timedelta(seconds=s)).isoformat()),
    st.integers(-7200, 600).map(
        lambda s: (NOW + timedelta(seconds=s, microseconds=5))
        .astimezone(timezone(timedelta(hours=2)))
        .isoformat()
    ),
    st.integers(-7200, 600).map(lambda s: int(NOW.timestamp()) + s),
    st.sampled_from(["", "yesterday", "2026-11-24T11:00:00.123456", "2026-W48-2T11:00:00.123456Z"]),
    st.booleans(),
    st.none(),
)
_numbers = st.one_of(
    st.integers(-(10**30), 10**30),
    st.integers(-3, 12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["4.5", "1e3", "abc", "", "0.0000001"]),
    st.booleans(),
    st.none(),
)
_props = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "units": _numbers,
            "region": st.sampled_from(["eu", "us", "mars", 3]),
            "user": st.sampled_from(["u1", "u2", ""]),
            "note": st.text(max_size=4),
        },
    ),
    st.lists(st.integers(), max_size=2),
    st.just("flat"),
)
_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _ids,
        "source": st.sampled_from(["app", "billing", ""]),
        "customer_ref": _ids,
        "metric": st.sampled_from(["api_calls", "logins", "seats", "peak", "nope", ""]),
        "timestamp": _times,
        "value": _numbers,
        "properties": _props,
        "extra": st.just(1),
    },
)


_valid_events = st.fixed_dictionaries(  # mostly the common event, to exercise the typed pass
    {
        "event_id": st.sampled_from(["e1", "e2", "e3", "e4"]),
        "source": st.just("app"),
        "customer_ref": st.sampled_from(["a", "b"]),
        "metric": st.sampled_from(["api_calls", "logins", "peak", "seats"]),
        "timestamp": st.tuples(st.integers(-7200, 600), st.sampled_from([250, 0, None])).map(
            lambda t: (NOW + timedelta(seconds=t[0], microseconds=t[1] or 0))
            .isoformat(timespec="seconds" if t[1] is None else "microseconds")
            .replace("+00:00", "Z")
        ),
    },
    optional={
        "value": st.one_of(st.integers(0, 10), st.none()),
        "properties": st.fixed_dictionaries(
            {"units": st.integers(0, 10)},
            optional={
                "region": st.sampled_from(["eu", "us", "mars"]),
                "user": st.just("u1"),
                "n": st.just("\x00"),
            },
        ),
    },
)


def _outcome(validated: ingest.Validated) -> tuple[Any, ...]:
    def raw(r: Any) -> Any:
        return ingest.as_sent(r) if isinstance(r, ingest.NativeEvent) else r

    cands = [
        (
            c.index,
            c.source,
            c.event_id,
            c.customer_ref,
            c.version.id,
            c.timestamp,
            c.value,
            c.properties,
            c.content_hash,
            raw(c.raw),
            c.props_json,
            c.ts_iso,
            c.key,
        )
        for c in validated.candidates
    ]
    rejections = [
        (r.index, r.source, r.event_id, r.code, r.message, r.raw) for r in validated.rejections
    ]
    return cands, rejections, validated.in_batch_duplicates


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_events, _valid_events, _valid_events), max_size=6))
def test_a_typed_native_batch_gives_what_the_general_path_gives(
    events: list[dict[str, Any]],
) -> None:
    body = json.dumps({"events": events}).encode()  # stdlib json: integers past 64 bits too
    native = ingest.decode_native(body)
    if native is None:
        return  # msgspec refused the batch: the view sends it down the general path whole
    window: Window = {"now": NOW, "max_age": timedelta(days=35), "max_future": timedelta(minutes=5)}
    typed = ingest.validate_batch([(e, e) for e in native], CATALOG, **window)
    general = ingest.validate_batch(
        [(e, e) for e in orjson.loads(body)["events"]], CATALOG, **window
    )
    assert _outcome(typed) == _outcome(general)


def test_the_common_batch_takes_the_typed_path() -> None:
    at = (NOW - timedelta(minutes=3, microseconds=-7)).isoformat().replace("+00:00", "Z")
    body = orjson.dumps(
        {
            "events": [
                {
                    "event_id": "e1",
                    "source": "app",
                    "customer_ref": "a",
                    "metric": "api_calls",
                    "timestamp": at,
                    "properties": {"units": 3, "region": "eu"},
                },
                {
                    "event_id": "e2",
                    "source": "app",
                    "customer_ref": "a",
                    "metric": "logins",
                    "timestamp": at,
                },
            ]
        }
    )
    native = ingest.decode_native(body)
    assert native is not None
    ctx = ingest._BatchContext(CATALOG, NOW - timedelta(days=35), NOW + timedelta(minutes=5))
    made = [ingest.typed_candidate(i, e, ctx) for i, e in enumerate(native)]
    assert [c.value if c is not None else "not typed" for c in made] == [Decimal(3), None]
    # one extra field anywhere: the whole batch goes the general way
    assert ingest.decode_native(body.replace(b'"e2"', b'"e2","extra":1')) is None


@pytest.mark.parametrize("raw", ["T000000.5Z", "T000000,0Z", "T00:00:00Z", "T00:00:00.000000Z"])
def test_other_iso_forms_give_the_same_event_on_both_paths(raw: str) -> None:
    day = (NOW - timedelta(days=1)).date().isoformat()
    event = {"event_id": "e1", "source": "app", "customer_ref": "a", "metric": "logins"}
    body = json.dumps({"events": [{**event, "timestamp": day + raw}]}).encode()
    native = ingest.decode_native(body)
    assert native is not None
    window: Window = {"now": NOW, "max_age": timedelta(days=35), "max_future": timedelta(minutes=5)}
    typed = ingest.validate_batch([(e, e) for e in native], CATALOG, **window)
    general = ingest.validate_batch(
        [(e, e) for e in orjson.loads(body)["events"]], CATALOG, **window
    )
    assert _outcome(typed) == _outcome(general)
    assert typed.candidates[0].ts_iso == general.candidates[0].timestamp.isoformat()


# --- the content hash is the one stored so far ----------------------------------------------


def test_the_content_hash_is_the_stored_one() -> None:
    """BLAKE2b-128 over orjson's [customer_ref, metric, UTC ISO time, value text] and the sorted
    properties: the hash every stored EventKey carries. The expected value was made by the
    retired C path (metering/_fastpath.c) and the Python path alike; a change here would make
    every redelivery of a stored event a conflict."""
    body = (
        b'{"events":[{"event_id":"ev-\\u00e9 \\"1\\"","source":"shop","customer_ref":"acct_7",'
        b'"metric":"api_calls","timestamp":"2026-11-24T06:12:34.567000Z",'
        b'"properties":{"units":3,"region":"eu"}}]}'
    )
    expected = "6216846ac8266fb757049e8e3a0e0113"
    window: Window = {"now": NOW, "max_age": timedelta(days=35), "max_future": timedelta(minutes=5)}
    native = ingest.decode_native(body)
    assert native is not None
    typed = ingest.validate_batch([(e, e) for e in native], CATALOG, **window)
    general = ingest.validate_batch(
        [(e, e) for e in orjson.loads(body)["events"]], CATALOG, **window
    )
    assert typed.candidates[0].content_hash == expected
    assert general.candidates[0].content_hash == expected
    assert (
        ingest.content_hash(
            "acct_7",
            "api_calls",
            "2026-11-24T06:12:34.567000+00:00",
            Decimal("3.000"),  # 3.000 and 3 are the same value
            b'{"region":"eu","units":3}',
        )
        == expected
    )


# --- odd strings, numbers and timestamps: the typed path's candidate is the general one -------


_z_digits = st.tuples(
    st.integers(0, 10000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 60),
    st.integers(0, 61),
    st.one_of(st.none(), st.integers(0, 999999)),
).map(
    lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T{t[3]:02d}:{t[4]:02d}:{t[5]:02d}"
    + ("" if t[6] is None else f".{t[6]:06d}")
    + "Z"
)
_in_window = st.integers(-7200, 600).map(  # inside the window, on both sides of NOW
    lambda s: (NOW + timedelta(seconds=s, microseconds=s % 3)).isoformat().replace("+00:00", "Z")
)
_typed_times = st.one_of(
    _in_window,
    _in_window,
    _times,
    _z_digits,  # the Z layout with any digits: 2025-02-29, month 13, 24:00, year 0...
    st.sampled_from(
        [
            "2024-02-29T11:00:00Z",
            "2026-11-24T11:00:00.000000Z",
            "2026-11-24t11:00:00Z",
            "2026-11-24T11:00:00.12345aZ",
            "2026-11-24T11:00:00.1234567",
            "２０２６-11-24T11:00:00Z",
        ]
    ),
)
_typed_text = st.one_of(
    st.sampled_from(["a", 'q"uote', "back\\slash", "é", "\u2028", "\xa0", "日本", "😀", "x" * 200]),
    st.text(min_size=1, max_size=8),
    st.text(alphabet='é😀"\\', min_size=150, max_size=200),  # long heads for the hash
)
_typed_props = st.fixed_dictionaries(
    {"units": st.one_of(st.integers(0, 10), st.integers(-(10**25), 10**25))},
    optional={
        "region": st.sampled_from(["eu", "eu", "mars"]),
        "n": st.just("\x00"),
        "deep": st.just({"a": [1, {"b": "é"}]}),
    },
)


_printable = st.one_of(  # ids the fast path takes: quotes and backslashes escaped in the hash
    st.sampled_from(["a", 'q"uote', "back\\slash", "é", "日本", "😀", "x" * 200]),
    st.text(alphabet='ab "\\é😀日', min_size=1, max_size=200),
)
_typed_common = (
    st.fixed_dictionaries(  # the event the fast path takes, with odd strings and numbers
        {
            "event_id": _printable,
            "source": _printable,
            "customer_ref": _printable,
            "metric": st.sampled_from(["api_calls", "logins", "peak"]),
            "timestamp": _in_window,
        },
        optional={
            "value": st.one_of(st.integers(0, 10), st.sampled_from([10**24 - 1, -(10**24) + 1])),
            "properties": _typed_props,
        },
    )
)
_typed_any = st.fixed_dictionaries(
    {
        "event_id": _typed_text,
        "source": _typed_text,
        "customer_ref": _typed_text,
        "metric": st.sampled_from(["api_calls", "logins", "seats", "peak", "no"]),
        "timestamp": _typed_times,
    },
    optional={
        "value": st.one_of(_numbers, st.sampled_from([10**24, -(10**24)])),
        "properties": st.one_of(_typed_props, _props),
    },
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_typed_common, _typed_any))
def test_the_typed_path_makes_the_general_paths_candidate(event: dict[str, Any]) -> None:
    """Event by event, with ids holding quotes, backslashes and non-ASCII, every digit in the
    timestamp's layout, values at the 24-digit bound and properties orjson cannot write: a typed
    event either gives the general path's candidate or goes the general way."""
    body = json.dumps({"events": [event]}).encode()
    native = ingest.decode_native(body)
    if native is None:
        return
    general_event = orjson.loads(body)["events"][0]
    ctx = ingest._BatchContext(CATALOG, NOW - timedelta(days=35), NOW + timedelta(minutes=5))
    for _ in range(2):  # the second time from the batch's caches
        made = ingest.typed_candidate(7, native[0], ctx)
        try:
            expected = ingest.validate_one(7, general_event, general_event, ctx)
        except ingest._Reject:
            assert made is None
            continue
        if made is not None:
            assert made.raw is native[0]
            made.raw = general_event
            assert made == expected
