import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """A one-time key may name what its action was on other than an invoice (a billing run, a
    contract, a price plan): issue 12, item 4."""

    dependencies = [
        ("billing", "0009_entity_document_prefix"),
    ]

    operations = [
        migrations.AlterField(
            model_name="actionkey",
            name="invoice",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billing.invoice",
            ),
        ),
        migrations.AddField(
            model_name="actionkey",
            name="subject",
            field=models.CharField(blank=True, max_length=200),
        ),
    ]
