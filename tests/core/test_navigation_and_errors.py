"""Menus by role and the error pages in the application's style (issue 15, item 8)."""

from __future__ import annotations

import re

import pytest
from django.test import Client, override_settings
from django.urls import include, path

from core import views
from core.navigation import menu_for
from core.roles import AUDITOR, FINANCE_APPROVER, FINANCE_CLERK, INTEGRATION_ADMIN

pytestmark = pytest.mark.django_db


def _menu(client: Client) -> list[str]:
    html = client.get("/").content.decode()
    nav = html[html.index('<nav aria-label="Main">') : html.index("</nav>")]
    return re.findall(r'<a href="[^"]*">([^<]+)</a>', nav)


@pytest.mark.parametrize(
    ("fixture", "shown", "hidden"),
    [
        (
            "clerk",
            ["Exception queue", "Usage", "Invoices", "Receivables"],
            ["Audit trail", "Billing runs", "Admin", "Approvals"],
        ),
        (
            "approver",
            ["Approvals", "Invoices", "Audit trail"],
            ["Billing runs", "Usage imports", "Admin"],
        ),
        (
            "integrator",
            [
                "Billing runs",
                "Run history",
                "Usage imports",
                "Mappings",
                "Plans",
                "Contracts",
                "Admin",
            ],
            ["Audit trail", "Invoices"],
        ),
        (
            "auditor",
            [
                "Exception queue",
                "Usage",
                "Invoices",
                "Receivables",
                "Billing runs",
                "Run history",
                "ERP",
                "Audit trail",
                "Plans",
                "Contracts",
                "Admin",
            ],
            ["Usage imports", "Approvals"],
        ),
    ],
)
def test_each_roles_menu_shows_what_it_works_on(client, request, fixture, shown, hidden) -> None:
    client.force_login(request.getfixturevalue(fixture))
    menu = _menu(client)
    for label in shown:
        assert label in menu, (fixture, label, menu)
    for label in hidden:
        assert label not in menu, (fixture, label, menu)


def test_menu_links_resolve_and_someone_with_two_roles_gets_both_menus_once() -> None:
    both = [link.label for link in menu_for({FINANCE_CLERK, FINANCE_APPROVER})]
    assert both.count("Invoices") == 1 and "Approvals" in both and "Exception queue" in both
    approvals = next(link for link in menu_for({FINANCE_APPROVER}) if link.label == "Approvals")
    assert approvals.url == "/exceptions/?view=awaiting_my_approval"
    assert menu_for(set()) == []
    every = menu_for({FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR})
    assert len(every) == len({link.label for link in every})


def _boom(request):
    raise RuntimeError("boom")


def _bad(request):
    from django.core.exceptions import SuspiciousOperation

    raise SuspiciousOperation("bad")


urlpatterns = [
    path("boom/", _boom),
    path("api/boom/", _boom),
    path("bad/", _bad),
    path("", include("config.urls")),
]
handler400 = "core.views.bad_request"
handler500 = "core.views.server_error"


def test_errors_are_pages_in_the_sites_style_and_json_on_api_paths(client, clerk) -> None:
    client.force_login(clerk)
    missing = client.get("/billing/nowhere/")
    assert missing.status_code == 404 and b'<nav aria-label="Main">' in missing.content
    assert b"Not found" in missing.content and b"Error 404." in missing.content
    denied = client.get("/exceptions/audit/")
    page = denied.content.decode()
    assert denied.status_code == 403 and '<nav aria-label="Main">' in page
    assert "You cannot open this page" in page and "This page is for: auditor" in page
    api = client.get("/api/v1/nowhere")
    assert api.status_code == 404 and api.json()["code"] == "not_found"


@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_400_and_500_pages(clerk) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(clerk)
    boom = client.get("/boom/")
    assert boom.status_code == 500 and b"Something went wrong" in boom.content
    assert b"Error 500." in boom.content and b"<nav" in boom.content
    api = client.get("/api/boom/")
    assert api.status_code == 500 and api.json()["code"] == "server_error"
    bad = client.get("/bad/")
    assert bad.status_code == 400 and b"The request could not be read" in bad.content


def test_a_stale_form_gets_the_csrf_page(clerk) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(clerk)
    response = client.post("/billing/invoices/finalize/", {"invoice": "1"})
    page = response.content.decode()
    assert response.status_code == 403 and "form had expired" in page
    assert '<nav aria-label="Main">' in page and "Error 403." in page


def test_the_plain_500_page_when_drawing_the_styled_one_fails(rf, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("template engine down")

    monkeypatch.setattr(views, "render", broken)
    response = views.server_error(rf.get("/billing/invoices/"))
    assert response.status_code == 500 and b"Something went wrong" in response.content
