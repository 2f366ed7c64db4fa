"""Indexes for the queue's sorts: due, opened, amount (amount unknown last; SQL, as SQLite's
indexes take no NULLS LAST)."""

from django.conf import settings
from django.db import migrations, models

from core.dbtriggers import per_vendor


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_currencies"),
        ("exceptions", "0006_case_counts"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="exceptioncase",
            name="case_open_due_idx",
        ),
        migrations.AddIndex(
            model_name="exceptioncase",
            index=models.Index(
                condition=models.Q(("status__in", ["open", "in_progress", "awaiting_approval"])),
                fields=["due_at", "id"],
                name="case_open_due_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="exceptioncase",
            index=models.Index(
                condition=models.Q(("status__in", ["open", "in_progress", "awaiting_approval"])),
                fields=["-first_seen_at", "-id"],
                name="case_open_opened_idx",
            ),
        ),
        per_vendor(
            'CREATE INDEX "case_open_amount_idx" ON "exceptions_exceptioncase" '
            '("amount_at_stake" DESC NULLS LAST, "id" DESC) '
            "WHERE \"status\" IN ('open', 'in_progress', 'awaiting_approval')",
            [
                'CREATE INDEX "case_open_amount_idx" ON "exceptions_exceptioncase" '
                '("amount_at_stake" DESC, "id" DESC) '
                "WHERE \"status\" IN ('open', 'in_progress', 'awaiting_approval')"
            ],
            'DROP INDEX IF EXISTS "case_open_amount_idx"',
            ['DROP INDEX IF EXISTS "case_open_amount_idx"'],
        ),
    ]
