"""Login is required everywhere and each role sees only what it may."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

PUBLIC = {"login", "healthz", "readyz"}


def _page_urls() -> list[str]:
    """Every concrete (argument-free) non-API page the site routes to."""
    urls: list[str] = []

    def walk(patterns: list, prefix: str) -> None:
        for p in patterns:
            route = str(p.pattern)
            if isinstance(p, URLResolver):
                if route.startswith(("api/", "compat/", "admin/")):
                    continue
                walk(p.url_patterns, prefix + route)
            elif isinstance(p, URLPattern):
                if "<" in route or p.name in PUBLIC or route.startswith("api/"):
                    continue
                urls.append("/" + prefix + route)

    walk(get_resolver().url_patterns, "")
    return urls


@pytest.mark.django_db
def test_every_page_redirects_anonymous_users_to_login() -> None:
    urls = _page_urls()
    assert "/" in urls and "/exceptions/audit/" in urls
    client = Client()
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


@pytest.mark.django_db
def test_admin_and_api_docs_need_login() -> None:
    client = Client()
    assert client.get("/admin/").status_code == 302
    docs = client.get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_health_endpoints_are_public() -> None:
    client = Client()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["migrations"] == "ok"
    assert ready.json()["checks"]["broker"] == "ok"


def test_login_page_logs_a_user_in(client: Client, clerk) -> None:
    response = client.post(reverse("login"), {"username": "clerk", "password": "pw-for-tests-1"})
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 200
    assert b"finance_clerk" in home.content


def test_wrong_password_is_told_plainly(client: Client, clerk) -> None:
    response = client.post(reverse("login"), {"username": "clerk", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_clerk_cannot_open_admin_or_audit(client: Client, clerk) -> None:
    client.force_login(clerk)
    admin = client.get("/admin/")
    assert admin.status_code == 302 and "/admin/login/" in admin["Location"]
    assert client.get(reverse("exceptions:audit")).status_code == 403
    assert b"Audit trail" not in client.get("/").content


def test_approver_reads_audit_but_not_admin(client: Client, approver) -> None:
    client.force_login(approver)
    assert client.get(reverse("exceptions:audit")).status_code == 200
    assert client.get("/admin/").status_code == 302


def test_auditor_reads_everything_and_changes_nothing(
    client: Client, auditor, customer_acme
) -> None:
    client.force_login(auditor)
    assert client.get(reverse("exceptions:audit")).status_code == 200
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/core/customer/").status_code == 200
    assert client.get("/admin/exceptions/auditentry/").status_code == 200
    assert client.get("/admin/core/customer/add/").status_code == 403
    change = client.post(f"/admin/core/customer/{customer_acme.pk}/change/", {"name": "Hacked"})
    assert change.status_code == 403
    customer_acme.refresh_from_db()
    assert customer_acme.name == "Acme Corp"


def test_integration_admin_manages_master_data_but_not_the_audit_trail(
    client: Client, integrator
) -> None:
    client.force_login(integrator)
    assert client.get("/admin/core/customer/add/").status_code == 200
    assert client.get("/admin/core/legalentity/add/").status_code == 200
    assert client.get("/admin/exceptions/auditentry/").status_code == 403
    assert client.get(reverse("exceptions:audit")).status_code == 403


def test_user_without_role_is_told_so(client: Client, make_user) -> None:
    client.force_login(make_user("nobody"))
    assert b"no Ledgerline role" in client.get("/").content


@pytest.mark.django_db
def test_unknown_api_path_answers_json_404(make_api_key, api_client) -> None:
    response = api_client(make_api_key("admin").raw_key).get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unknown_page_answers_the_sites_404(client: Client, clerk) -> None:
    client.force_login(clerk)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"There is nothing at this address" in response.content


def test_admin_edits_of_master_data_are_audited(client: Client, integrator, customer_acme) -> None:
    from exceptions.models import AuditEntry

    client.force_login(integrator)
    url = f"/admin/core/customer/{customer_acme.pk}/change/"
    form = {
        "legal_entity": customer_acme.legal_entity_id,
        "code": "acme",
        "name": "Acme Corporation",
        "country": "US",
        "tax_jurisdiction": "",
        "email": "",
        "external_refs": "{}",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content[:500]
    entry = AuditEntry.objects.get(action="customer.change")
    assert entry.actor_label == "integrator"
    assert entry.before == {"name": "Acme Corp"} and entry.after == {"name": "Acme Corporation"}

    client.post(
        "/admin/core/customer/",
        {"action": "delete_selected", "_selected_action": [customer_acme.pk], "post": "yes"},
    )
    assert (
        AuditEntry.objects.filter(action="customer.delete", object_id=str(customer_acme.pk)).count()
        == 1
    )
    from core.models import Customer

    assert not Customer.objects.filter(pk=customer_acme.pk).exists()
