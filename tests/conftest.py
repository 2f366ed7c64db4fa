"""Fixtures every app's tests share: users per role, API keys, master data."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from rest_framework.test import APIClient

from core import roles
from core.models import Currency, Customer, LegalEntity
from core.services import IssuedKey, api_key_create
from core.actors import Actor

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL=postgres://...)"
)


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    def make(username: str, *role_names: str, is_staff: bool = False) -> User:
        roles.sync_role_permissions()
        user = User.objects.create_user(
            username=username, password="pw-for-tests-1", is_staff=is_staff
        )
        for name in role_names:
            user.groups.add(Group.objects.get(name=name))
        return user

    return make


@pytest.fixture
def clerk(make_user: Callable[..., User]) -> User:
    return make_user("clerk", roles.FINANCE_CLERK)


@pytest.fixture
def approver(make_user: Callable[..., User]) -> User:
    return make_user("approver", roles.FINANCE_APPROVER)


@pytest.fixture
def integrator(make_user: Callable[..., User]) -> User:
    return make_user("integrator", roles.INTEGRATION_ADMIN, is_staff=True)


@pytest.fixture
def auditor(make_user: Callable[..., User]) -> User:
    return make_user("auditor", roles.AUDITOR, is_staff=True)


@pytest.fixture
def system_actor() -> Actor:
    return Actor.system("tests")


@pytest.fixture
def make_api_key(db: None) -> Callable[..., IssuedKey]:
    def make(*scopes: str, name: str = "test-key") -> IssuedKey:
        return api_key_create(name=name, scopes=list(scopes), actor=Actor.system("tests"))

    return make


@pytest.fixture
def api_client() -> Callable[[str], APIClient]:
    def make(raw_key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def usd(db: None) -> Currency:
    # get_or_create: transactional tests flush the rows the data migration loaded.
    return Currency.objects.get_or_create(
        code="USD", defaults={"name": "US Dollar", "minor_units": 2}
    )[0]


@pytest.fixture
def entity_us(db: None, usd: Currency) -> LegalEntity:
    return LegalEntity.objects.create(
        code="ll-us",
        name="Ledgerline Inc.",
        base_currency=usd,
        country="US",
        timezone="America/New_York",
    )


@pytest.fixture
def customer_acme(entity_us: LegalEntity) -> Customer:
    return Customer.objects.create(
        legal_entity=entity_us, code="acme", name="Acme Corp", country="US"
    )
