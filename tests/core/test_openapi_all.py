"""Schemathesis over the whole OpenAPI schema (every operation, with a key holding every
scope): no 5xx, and every status code and content type is one the schema documents
(issue 12, item 3). Bounded in examples per operation so it runs in CI in about a minute."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from pytest_django import Settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from config.wsgi import application
from core.services import IssuedKey

ALL_SCOPES = ("admin", "usage:write", "postings:read", "invoices:read", "exceptions:read")


def full_schema() -> dict[str, Any]:
    raw: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return raw


schema = schemathesis.openapi.from_dict(full_schema())
schema.app = application
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.fixture
def every_scope_key(make_api_key: Callable[..., IssuedKey], settings: Settings) -> Iterator[str]:
    settings.ALLOWED_HOSTS = ["*"]
    # Requests go straight to the WSGI app: keep the test's transaction open across them.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield make_api_key(*ALL_SCOPES, name="fuzz-all").raw_key
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_every_operation_documents_its_errors() -> None:
    for path, operations in full_schema()["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert {"400", "401", "403", "404"} <= codes, (method, path, codes)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_never_answers_5xx_and_keeps_its_schema(case: Any, every_scope_key: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {every_scope_key}"}, checks=CHECKS)
