"""A NUL character or a whole number past 64 bits in a query parameter is a 400 naming it, on
every API list and every page (issue 12, item 3: they answered 500)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from core.form_input import BIGINT_MAX
from core.middleware import _bad_parameter

pytestmark = pytest.mark.django_db

HUGE = "270829455571575734272"
BAD_QUERIES = [
    ("customer=%00", "customer"),
    ("status=open%00", "status"),
    (f"limit={HUGE}", "limit"),
    (f"offset={HUGE}", "offset"),
    (f"page={HUGE}", "page"),
    (f"customer_id=-{HUGE}", "customer_id"),
]


def api_list_paths() -> list[str]:
    schema: dict[str, Any] = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(p for p, ops in schema["paths"].items() if "get" in ops and "{" not in p)


def page_paths() -> list[str]:
    """Every page without arguments under the apps' page URLs."""
    found: list[str] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                if "<" not in route and not route.startswith(("api/", "compat/", "admin/")):
                    walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern) and "<" not in route and "^" not in route:
                found.append("/" + prefix + route)

    walk(get_resolver().url_patterns, "")
    return sorted(set(found) - {"/accounts/logout/"})


def test_the_lists_and_pages_are_found() -> None:
    assert "/api/v1/invoices" in api_list_paths() or "/api/v1/invoices/" in api_list_paths()
    assert len(page_paths()) >= 8, page_paths()


@pytest.mark.parametrize(("query", "name"), BAD_QUERIES)
def test_every_api_list_refuses_a_bad_parameter_with_a_400(
    make_api_key: Callable[..., Any], api_client: Callable[[str], APIClient], query: str, name: str
) -> None:
    scopes = ("admin", "usage:write", "postings:read", "invoices:read", "exceptions:read")
    client = api_client(make_api_key(*scopes).raw_key)
    for path in api_list_paths():
        resp = client.get(f"{path}?{query}")
        assert resp.status_code == 400, (path, resp.status_code, resp.content[:200])
        body = resp.json()
        assert body["code"] == "invalid_parameter" and repr(name) in body["message"], body


@pytest.mark.parametrize(("query", "name"), BAD_QUERIES)
def test_every_page_refuses_a_bad_parameter_with_a_400(
    admin_user: User, query: str, name: str
) -> None:
    client = Client()
    client.force_login(admin_user)
    for path in page_paths():
        resp = client.get(f"{path}?{query}")
        assert resp.status_code == 400, (path, resp.status_code)
        assert repr(name) in resp.content.decode()


def test_a_nul_in_a_form_field_is_a_400(admin_user: User) -> None:
    client = Client()
    client.force_login(admin_user)
    resp = client.post("/exceptions/", {"reason": "void\x00"})
    assert resp.status_code == 400 and "'reason'" in resp.content.decode()


def test_the_bounds() -> None:
    assert _bad_parameter("limit", str(BIGINT_MAX)) is None
    assert _bad_parameter("limit", str(BIGINT_MAX + 1)) is not None
    assert _bad_parameter("customer", HUGE) is None  # a free-text filter may hold digits
    assert _bad_parameter("q", "a\x00") is not None
    # a superscript digit is a digit to str.isdigit but not to int(): not a crash
    assert _bad_parameter("limit", "¹") is None and _bad_parameter("customer_id", "-²³") is None


def test_a_superscript_limit_is_a_4xx_not_a_500(
    make_api_key: Callable[..., Any], api_client: Callable[[str], APIClient]
) -> None:
    client = api_client(make_api_key("admin").raw_key)
    resp = client.get("/api/v1/billing/price-plans?limit=%C2%B9")
    assert resp.status_code < 500, resp.content[:200]
