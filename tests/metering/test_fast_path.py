"""The ingest fast path's shortcuts give exactly what the general path gives (the content hash,
stored with every key, depends on the timestamp's ISO form)."""

from __future__ import annotations

import pytest

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
        "1763964754",
        "1763964754.25",
    ],
)
def test_the_fast_timestamp_is_the_general_one(raw: str) -> None:
    try:
        expected = ingest.parse_timestamp(raw)
    except ingest._Reject:
        with pytest.raises(ingest._Reject):
            ingest._timestamp(raw, None)
        return
    assert ingest._timestamp(raw, None) == (expected, expected.isoformat())
    assert ingest._timestamp(raw, {}) == (expected, expected.isoformat())


def test_a_naive_timestamp_is_refused_with_the_same_message() -> None:
    with pytest.raises(ingest._Reject) as fast:
        ingest._timestamp("2026-11-24T06:12:34.567000", None)
    assert fast.value.code == "invalid_timestamp"
    assert "has no time zone" in fast.value.message
