"""Every enum filter of every API list answers an unknown value with 400 `invalid_parameter`
naming the allowed values, the same ones the schema documents (issue 12, item 3): one
mechanism, core.api.filters.FilterBackend over django-filter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from core.services import IssuedKey

pytestmark = pytest.mark.django_db

SCOPES = ("admin", "usage:write", "postings:read", "invoices:read", "exceptions:read")


def enum_filters() -> list[tuple[str, str, list[str]]]:
    """(list path, parameter, its documented values) of every enum query parameter."""
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None or "{" in path:
            continue
        for param in get.get("parameters", []):
            values = param.get("schema", {}).get("enum")
            if param.get("in") == "query" and values:
                found.append((path, param["name"], [str(v) for v in values]))
    return found


def test_the_lists_named_in_the_issue_have_their_enum_filters_documented() -> None:
    names = {(path, name) for path, name, _ in enum_filters()}
    for wanted in [
        ("/api/v1/metering/rejected", "status"),
        ("/api/v1/postings", "status"),
        ("/api/v1/postings", "document_type"),
        ("/api/v1/invoices", "status"),
        ("/api/v1/invoices", "kind"),
        ("/api/v1/exception-cases", "status"),
    ]:
        assert wanted in names, (wanted, sorted(names))


def test_an_unknown_enum_value_is_a_400_naming_the_allowed_values(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key(*SCOPES).raw_key)
    for path, name, values in enum_filters():
        resp = client.get(path, {name: "no-such-value"})
        assert resp.status_code == 400, (path, name, resp.status_code)
        body = resp.json()
        assert body["code"] == "invalid_parameter", (path, name, body)
        assert body["extra"]["field"] == name
        assert set(body["extra"]["allowed"]) == set(values), (path, name, body)
        assert all(v in body["message"] for v in values) and "no-such-value" in body["message"]
        # every documented value is accepted
        for value in values:
            ok = client.get(path, {name: value})
            assert ok.status_code == 200, (path, name, value, ok.content[:300])


def test_another_bad_filter_value_names_its_parameter(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key(*SCOPES).raw_key)
    for path, query in [
        ("/api/v1/postings", {"connection": "1.5"}),
        ("/api/v1/postings", {"updated_since": "yesterday"}),
        ("/api/v1/invoices", {"issued_from": "2026-13-01"}),
        ("/api/v1/exception-cases", {"age_max": "-3.5e62"}),
        ("/api/v1/exception-cases", {"age_min": "1e400"}),
    ]:
        resp = client.get(path, query)
        name = next(iter(query))
        assert resp.status_code == 400, (path, query, resp.status_code)
        body = resp.json()
        assert body["code"] == "invalid_parameter" and repr(name) in body["message"], body


def test_a_nul_or_a_deep_body_is_a_400_not_a_500(
    make_api_key: Callable[..., IssuedKey], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key(*SCOPES).raw_key)
    metric = {"code": "m1", "name": "M", "aggregation": "count", "properties_schema": {"a\x00": 1}}
    resp = client.post("/api/v1/metering/metrics", metric, format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_request"
    deep = "[" * 100_000 + "]" * 100_000
    resp = client.post("/api/v1/metering/metrics", deep, content_type="application/json")
    assert resp.status_code == 400 and resp.json()["code"] == "malformed_request"
