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
#: What the printable invoice shows for the seller: postal address and tax id (made up).
ENTITY_ADDRESSES = {
    "ll-us": (
        "200 Market Street, Suite 400\nSan Francisco, CA 94105\nUnited States",
        "EIN 12-3456789",
    ),
    "ll-de": ("Friedrichstraße 100\n10117 Berlin\nGermany", "DE123456789"),
    "ll-jp": ("1-2-3 Marunouchi, Chiyoda-ku\nTokyo 100-0005\nJapan", "T1234567890123"),
    "ll-bh": ("Building 100, Road 1701\nManama 317\nBahrain", "VAT 200000123400003"),
}
CUSTOMERS = [
    ("ll-us", "acme", "Acme Corp", "US", "US-CA"),
    ("ll-us", "globex", "Globex LLC", "US", "US-NY"),
    ("ll-us", "initech", "Initech", "US", "US-TX"),
    ("ll-de", "muster", "Muster AG", "DE", "DE"),
    ("ll-de", "beispiel", "Beispiel GmbH", "AT", "AT"),
    ("ll-jp", "yamada", "Yamada Shoji", "JP", "JP"),
    ("ll-bh", "manama", "Manama Logistics", "BH", "BH"),
]
#: The buyer's billing address and tax id on the printable invoice (made up).
CUSTOMER_ADDRESSES = {
    "acme": ("1 Acme Way\nPalo Alto, CA 94301\nUnited States", ""),
    "globex": ("500 Fifth Avenue\nNew York, NY 10110\nUnited States", "EIN 98-7654321"),
    "initech": ("4120 Freidrich Lane\nAustin, TX 78744\nUnited States", ""),
    "muster": ("Musterstraße 1\n80331 München\nGermany", "DE987654321"),
    "beispiel": ("Beispielgasse 2\n1010 Wien\nAustria", "ATU12345678"),
    "yamada": ("4-5-6 Umeda, Kita-ku\nOsaka 530-0001\nJapan", "T9876543210987"),
    "manama": ("Flat 21, Building 2500, Road 2832\nSeef 428\nBahrain", "VAT 200000987600003"),
}


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
                    address=ENTITY_ADDRESSES[code][0],
                    tax_id=ENTITY_ADDRESSES[code][1],
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
                    address=CUSTOMER_ADDRESSES[code][0],
                    tax_id=CUSTOMER_ADDRESSES[code][1],
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
