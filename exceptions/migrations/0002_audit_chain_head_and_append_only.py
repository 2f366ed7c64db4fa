from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from core.dbtriggers import append_only


def create_head(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("exceptions", "AuditChainHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("exceptions", "0001_initial")]
    operations = [
        migrations.RunPython(create_head, migrations.RunPython.noop),
        append_only("exceptions_auditentry", what="Audit entries"),
    ]
