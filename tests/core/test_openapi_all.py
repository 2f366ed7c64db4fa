"""Schemathesis over the whole OpenAPI schema (every operation, with a key holding every
scope): no 5xx, and every status code and content type is one the schema documents
(issue 12, item 3). Bounded in examples per operation so it runs in CI in about a minute."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.generation import GenerationMode
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


def test_the_schema_links_the_main_flows() -> None:
    links = {
        (op["operationId"], name, link["operationId"])
        for ops in full_schema()["paths"].values()
        for op in ops.values()
        for response in op["responses"].values()
        for name, link in response.get("links", {}).items()
    }
    for flow in [
        ("events_ingest", "RejectedEvents", "api_v1_metering_rejected_list"),
        ("api_v1_invoices_list", "Invoice", "api_v1_invoices_retrieve"),
        ("api_v1_exception_cases_retrieve", "Act", "api_v1_exception_cases_actions_create"),
        ("api_v1_postings_list", "Posting", "api_v1_postings_retrieve"),
    ]:
        assert flow in links, flow


@pytest.fixture
def seeded(every_scope_key: str) -> None:
    """Rows for the links to lead to: a finalized invoice with its lines, and a rejected event
    with its exception case."""
    from datetime import UTC, datetime, timedelta

    from tests.exceptions.conftest import finalized_invoice, ingest

    finalized_invoice()
    ingest(
        {
            "event_id": "bad-1",
            "source": "app",
            "customer_ref": "ll-us-acme",
            "metric": "no_such_metric",
            "timestamp": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        }
    )


# The stateful phase's own schema: its calls carry the key in the config (the generator's random
# security parameters would replace it), and only valid inputs, so the links reach real rows.
linked_schema = schemathesis.openapi.from_dict(full_schema())
linked_schema.app = application
linked_schema.config.generation.update(
    modes=[GenerationMode.POSITIVE], with_security_parameters=False
)


@pytest.mark.django_db
def test_linked_calls_never_answer_5xx_and_keep_the_schema(
    seeded: None, every_scope_key: str
) -> None:
    """The stateful phase: schemathesis follows the schema's links (list -> detail -> action,
    ingest -> dead letter) with the ids the previous answers gave. Each scenario starts from the
    seeded rows (a savepoint rolled back after it), so a replayed scenario meets the same state."""
    from django.core.cache import cache
    from django.db import transaction

    answered: set[tuple[str, int]] = set()
    linked_schema.config.update(headers={"Authorization": f"Bearer {every_scope_key}"})

    class Linked(linked_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            cache.clear()  # the throttles' counts
            self.savepoint = transaction.savepoint()

        def teardown(self) -> None:
            transaction.savepoint_rollback(self.savepoint)

        def after_call(self, response: Any, case: Any) -> None:
            answered.add((case.operation.label, response.status_code))

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Linked.run(
        settings=settings(
            max_examples=100,
            stateful_step_count=8,
            deadline=None,
            database=None,
            derandomize=True,  # one fixed sequence: a failure here is the same on every run
            suppress_health_check=list(HealthCheck),
        )
    )
    # the links led to real rows: operations on an {id} answered 200 (random ids give 404)
    followed = {label for label, status in answered if status == 200 and "{" in label}
    assert len(followed) >= 3, sorted(answered)
