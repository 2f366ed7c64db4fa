"""Demo data: legal entities, customers and one user per role. Idempotent."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from core import roles
from core.models import Currency, Customer, LegalEntity
from core.services import currency_ensure, customer_create, legal_entity_create
from core.actors import Actor

DEMO_PASSWORD = "ledgerline-demo"

CURRENCIES = [
    ("USD", "US Dollar", 2),
    ("EUR", "Euro", 2),
    ("JPY", "Yen", 0),
    ("BHD", "Bahraini Dinar", 3),  # three minor units: the pages show "BHD 1,234.567"
]
ENTITIES = [
    ("ll-us", "Ledgerline Inc.", "USD", "US", "America/New_York"),
    ("ll-de", "Ledgerline GmbH", "EUR", "DE", "Europe/Berlin"),
    ("ll-jp", "Ledgerline K.K.", "JPY", "JP", "Asia/Tokyo"),
    ("ll-bh", "Ledgerline Gulf W.L.L.", "BHD", "BH", "Asia/Bahrain"),
]
CUSTOMERS = [
    ("ll-us", "acme", "Acme Corp", "US", "US-CA"),
    ("ll-us", "globex", "Globex LLC", "US", "US-NY"),
    ("ll-us", "initech", "Initech", "US", "US-TX"),
    ("ll-de", "muster", "Muster AG", "DE", "DE"),
    ("ll-de", "beispiel", "Beispiel GmbH", "AT", "AT"),
    ("ll-jp", "yamada", "Yamada Shoji", "JP", "JP"),
    ("ll-bh", "manama", "Manama Logistics", "BH", "BH"),
]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    is_staff: bool


USERS = [
    DemoUser("clerk", roles.FINANCE_CLERK, False),
    DemoUser("approver", roles.FINANCE_APPROVER, False),
    DemoUser("integrator", roles.INTEGRATION_ADMIN, True),
    DemoUser("auditor", roles.AUDITOR, True),
]


def load_demo_data() -> list[DemoUser]:
    actor = Actor.system("demo data")
    roles.sync_role_permissions()
    with transaction.atomic():
        for (
            code,
            name,
            minor_units,
        ) in CURRENCIES:  # shipped by a migration; ensured for flushed test DBs
            currency_ensure(code=code, name=name, minor_units=minor_units, actor=actor)
        for code, name, currency, country, tz in ENTITIES:
            if not LegalEntity.objects.filter(code=code).exists():
                legal_entity_create(
                    code=code,
                    name=name,
                    base_currency=Currency.objects.get(code=currency),
                    country=country,
                    timezone_name=tz,
                    actor=actor,
                )
        for entity_code, code, name, country, jurisdiction in CUSTOMERS:
            entity = LegalEntity.objects.get(code=entity_code)
            if not Customer.objects.filter(legal_entity=entity, code=code).exists():
                customer_create(
                    legal_entity=entity,
                    code=code,
                    name=name,
                    country=country,
                    tax_jurisdiction=jurisdiction,
                    actor=actor,
                    external_refs={"product": f"acct_{code}"},
                )
        User = get_user_model()
        for demo in USERS:
            user, created = User.objects.get_or_create(username=demo.username)
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_staff = demo.is_staff
                user.save()
            user.groups.add(Group.objects.get(name=demo.role))
    return USERS
