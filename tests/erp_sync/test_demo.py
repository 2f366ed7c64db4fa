"""The demo's ERP side through the real services (the memory ERP stands in for Tryton)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.demo import load_demo_billing
from billing.models import Invoice
from core.demo import load_demo_data
from erp_sync.connectors.memory import memory_erp
from erp_sync.demo import load_demo_erp
from erp_sync.models import ErpConnection, JournalEntry, Posting
from erp_sync.services import outbox_drain
from exceptions.models import ExceptionCase

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_demo_erp_side_books_everything_once_and_stages_the_unmapped_revenue() -> None:
    load_demo_data()
    load_demo_billing(now=NOW)
    kwargs = {"tryton_url": "http://127.0.0.1:1", "database": "demo", "login": "x"}
    first = load_demo_erp(admin_password=None, now=NOW, **kwargs)
    assert len(first.connections) == 4  # one per demo entity (prepare_db.COMPANIES)
    assert not Invoice.objects.filter(status="draft").exists()
    assert Invoice.objects.filter(kind="credit_memo").count() == 1
    assert Invoice.objects.filter(status="void").count() == 1
    assert Invoice.objects.filter(status="paid").count() == 1
    entries, postings = JournalEntry.objects.count(), Posting.objects.count()
    assert entries == 7 + 1 + 1 + 1  # seven invoices, the credit memo, the void, the payment
    # run again: nothing new anywhere
    load_demo_erp(admin_password=None, now=NOW, **kwargs)
    assert (JournalEntry.objects.count(), Posting.objects.count()) == (entries, postings)
    # sent to an ERP (here the memory one), the German documents wait for their revenue account
    erp = memory_erp("demo-check")
    erp.reset()
    ErpConnection.objects.update(kind="memory", database="demo-check", password_env="")
    outbox_drain()
    de = Posting.objects.filter(legal_entity__code="ll-de")
    assert set(de.values_list("status", flat=True)) == {"held"}
    case = ExceptionCase.objects.get(kind="missing_gl_mapping")
    assert "'platform'" in case.title and "tryton-ll-de" in case.title
    assert set(
        Posting.objects.exclude(legal_entity__code="ll-de").values_list("status", flat=True)
    ) == {"posted"}
    erp.reset()
