from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from core.models import ApiKey, Customer
from core.services import IssuedKey
from metering.models import CustomerMapping
from tests.metering.factories import make_metric


def as_dict(value: object) -> dict[str, Any]:
    """A JSON column's value where the test expects an object (the test fails on anything else)."""
    assert isinstance(value, dict), value
    return value


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def metrics(db: None) -> None:
    make_metric("api_calls")
    make_metric(
        "storage_gb",
        "sum",
        "gb",
        properties_schema={
            "type": "object",
            "properties": {"gb": {"type": ["number", "string"]}, "region": {"enum": ["eu", "us"]}},
        },
    )


@pytest.fixture
def mapped(customer_acme: Customer) -> CustomerMapping:
    return CustomerMapping.objects.create(
        source="app", customer_ref="acct-1", customer=customer_acme
    )


class KeyedClient(APIClient):
    """A producer's API client that carries its key (tests compare the events' api_key_id)."""

    api_key: ApiKey


@pytest.fixture
def writer(make_api_key: Callable[..., IssuedKey]) -> KeyedClient:
    issued = make_api_key("usage:write", name="producer")
    client = KeyedClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.raw_key}")
    client.api_key = issued.api_key
    return client


@pytest.fixture
def admin_client(
    make_api_key: Callable[..., Any], api_client: Callable[[str], APIClient]
) -> APIClient:
    return api_client(make_api_key("admin", name="admin").raw_key)


@pytest.fixture
def event(now: datetime) -> Callable[..., dict[str, Any]]:
    def make(event_id: str, **kw: Any) -> dict[str, Any]:
        ev = {
            "event_id": event_id,
            "source": "app",
            "customer_ref": "acct-1",
            "metric": "api_calls",
            "timestamp": iso(now - timedelta(minutes=5)),
        }
        ev.update(kw)
        return ev

    return make
