"""A `next` parameter never sends the browser off the site."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from core.redirects import safe_next_url

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/path",
    "///evil.example",
    "\\\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    " https://evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_an_off_site_next_falls_back(target: str) -> None:
    request = RequestFactory().post("/x", {"next": target})
    assert safe_next_url(request, "/home-of-x") == "/home-of-x"


@pytest.mark.parametrize("target", ["/billing/invoices/?status=draft", "/exceptions/audit/"])
def test_a_next_on_the_site_is_kept(target: str) -> None:
    request = RequestFactory().get("/x", {"next": target})
    assert safe_next_url(request, "/") == target


def test_the_fallback_may_be_a_url_name() -> None:
    assert safe_next_url(RequestFactory().get("/x"), "login") == "/accounts/login/"


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_the_site(target: str) -> None:
    User.objects.create_user(username="u", password="pw-for-tests-1")
    response = Client().post(
        "/accounts/login/", {"username": "u", "password": "pw-for-tests-1", "next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
