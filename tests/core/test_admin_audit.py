"""Plain admin edits of master data write their audit entry (core.admin_base.AuditedModelAdmin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from core.models import Currency
from exceptions.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user: Callable[..., User]) -> Client:
    client = Client()
    client.force_login(make_user("integrator", "integration_admin", is_staff=True))
    return client


def _entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, object_type="core.currency"))


def test_create_change_and_delete_in_the_admin_are_audited(admin_client: Client) -> None:
    add = admin_client.post(
        "/admin/core/currency/add/", {"code": "XTS", "name": "Test", "minor_units": "2"}
    )
    assert add.status_code == 302, add.content[:500]
    [created] = _entries("currency.create")
    assert created.actor_label == "integrator" and created.object_id == "XTS"
    assert created.after == {"code": "XTS", "name": "Test", "minor_units": 2}

    change = admin_client.post(
        "/admin/core/currency/XTS/change/", {"code": "XTS", "name": "Testing", "minor_units": "3"}
    )
    assert change.status_code == 302
    [changed] = _entries("currency.change")
    assert (changed.before, changed.after) == (
        {"name": "Test", "minor_units": 2},
        {"name": "Testing", "minor_units": 3},
    )

    delete = admin_client.post("/admin/core/currency/XTS/delete/", {"post": "yes"})
    assert delete.status_code == 302
    [deleted] = _entries("currency.delete")
    assert deleted.before == {"code": "XTS", "name": "Testing", "minor_units": 3}
    assert not Currency.objects.filter(code="XTS").exists()


def test_a_bulk_delete_writes_one_entry_per_row(admin_client: Client) -> None:
    for code in ("XTA", "XTB"):
        Currency.objects.create(code=code, name=code, minor_units=2)
    response = admin_client.post(
        "/admin/core/currency/",
        {"action": "delete_selected", "_selected_action": ["XTA", "XTB"], "post": "yes"},
    )
    assert response.status_code == 302
    assert sorted(e.object_id for e in _entries("currency.delete")) == ["XTA", "XTB"]
