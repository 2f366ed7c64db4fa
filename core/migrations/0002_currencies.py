"""ISO 4217 currencies Ledgerline ships with, with their minor units."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

CURRENCIES = [
    ("USD", "US Dollar", 2),
    ("EUR", "Euro", 2),
    ("GBP", "Pound Sterling", 2),
    ("JPY", "Yen", 0),
    ("KWD", "Kuwaiti Dinar", 3),
    ("BHD", "Bahraini Dinar", 3),
    ("CHF", "Swiss Franc", 2),
    ("CAD", "Canadian Dollar", 2),
    ("AUD", "Australian Dollar", 2),
    ("SEK", "Swedish Krona", 2),
    ("KRW", "Won", 0),
    ("INR", "Indian Rupee", 2),
    ("BRL", "Brazilian Real", 2),
]


def forwards(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Currency = apps.get_model("core", "Currency")
    for code, name, minor in CURRENCIES:
        Currency.objects.update_or_create(code=code, defaults={"name": name, "minor_units": minor})


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
