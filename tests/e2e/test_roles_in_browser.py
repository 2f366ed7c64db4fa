"""Each demo role logs in through the real login page and sees only what its role allows."""

from __future__ import annotations

import pytest

from core.demo import DEMO_PASSWORD, load_demo_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url  # anonymous users land on the login page
    page.fill("#id_username", username)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.mark.parametrize(
    ("username", "links", "absent", "audit_status", "admin_ok"),
    [
        ("clerk", ["Home", "API docs"], ["Audit trail", "Admin"], 403, False),
        ("approver", ["Home", "Audit trail"], ["Admin"], 200, False),
        ("integrator", ["Home", "Admin"], ["Audit trail"], 403, True),
        ("auditor", ["Home", "Audit trail", "Admin"], [], 200, True),
    ],
)
def test_each_role_sees_only_what_it_may(
    page, live_server, username, links, absent, audit_status, admin_ok
) -> None:
    load_demo_data()
    _login(page, live_server, username)
    assert page.locator("h1").inner_text().startswith("Welcome")
    nav = page.locator("nav[aria-label=Main]")
    for name in links:
        assert nav.get_by_role("link", name=name).count() == 1, name
    for name in absent:
        assert nav.get_by_role("link", name=name).count() == 0, name

    audit = page.goto(f"{live_server.url}/exceptions/audit/")
    assert audit.status == audit_status
    page.goto(f"{live_server.url}/admin/")
    assert ("/admin/login/" not in page.url) is admin_ok


def test_wrong_password_stays_on_login_with_a_message(page, live_server) -> None:
    load_demo_data()
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "clerk")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    assert "did not match" in page.locator(".error").inner_text()
