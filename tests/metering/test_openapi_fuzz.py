"""Schemathesis over the OpenAPI description of the ingest endpoints (native,
CloudEvents, Lago): no 5xx, and every response matches the documented schema.
Bounded in examples so the suite stays fast."""

from __future__ import annotations

from collections.abc import Callable
from metering.models import CustomerMapping
from core.services import IssuedKey
from pytest_django import Settings

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application

INGEST_PATHS = ("/api/v1/events", "/compat/lago/api/v1/events", "/compat/lago/api/v1/events/batch")


def ingest_schema() -> dict[str, Any]:
    raw: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    raw["paths"] = {p: v for p, v in raw["paths"].items() if p in INGEST_PATHS}
    return raw


schema = schemathesis.openapi.from_dict(ingest_schema())
schema.app = application
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzz_key(
    make_api_key: Callable[..., IssuedKey],
    metrics: None,
    mapped: CustomerMapping,
    settings: Settings,
) -> Iterator[str]:
    settings.ALLOWED_HOSTS = ["*"]
    # Requests go straight to the WSGI app (not Django's test client): keep the test's
    # transaction open across them, as the test client does.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield make_api_key("usage:write", name="fuzz").raw_key
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_the_ingest_endpoints_are_described() -> None:
    assert set(ingest_schema()["paths"]) == set(INGEST_PATHS)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_ingest_api_never_5xx_and_keeps_its_schema(case: Any, fuzz_key: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=CHECKS)
