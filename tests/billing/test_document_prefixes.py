"""Document numbers unique across the group (issue 15, item 2): each entity's own prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing import services
from billing.models import EntityBillingSettings
from tests.billing.conftest import ACTOR
from tests.billing.test_money_pages import make_world

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_each_entity_numbers_with_its_own_prefix_gaplessly_and_old_numbers_stay() -> None:
    w = make_world()
    # before any prefix: numbered as before
    old = services.invoice_finalize(invoice=w.usd, actor=ACTOR, now=NOW)
    assert old.number == "INV-2026-000001"
    for inv, prefix in ((w.usd, "US"), (w.eur, "DE")):
        EntityBillingSettings.objects.create(legal_entity=inv.legal_entity, document_prefix=prefix)
    de = services.invoice_finalize(invoice=w.eur, actor=ACTOR, now=NOW)
    assert de.number == "DE-INV-2026-000001"
    memo = services.credit_memo_issue(invoice=de, reason="goodwill", actor=ACTOR, now=NOW)
    assert memo.number == "DE-CN-2026-000001"
    us_memo = services.credit_memo_issue(invoice=old, reason="goodwill", actor=ACTOR, now=NOW)
    assert us_memo.number == "US-CN-2026-000001"
    old.refresh_from_db()
    assert old.number == "INV-2026-000001"  # an issued number never changes


def test_the_counter_goes_on_after_a_prefix_is_set() -> None:
    w = make_world()
    final = services.invoice_finalize(invoice=w.usd, actor=ACTOR, now=NOW)
    line = final.lines.get(kind="usage")
    first = services.credit_memo_issue(
        invoice=final, reason="a", actor=ACTOR, now=NOW, lines={line.pk: Decimal("0.10")}
    )
    assert first.number == "CN-2026-000001"
    EntityBillingSettings.objects.create(legal_entity=final.legal_entity, document_prefix="US")
    second = services.credit_memo_issue(
        invoice=final, reason="b", actor=ACTOR, now=NOW, lines={line.pk: Decimal("0.10")}
    )
    assert second.number == "US-CN-2026-000002"  # same series, no gap, new prefix


def test_the_database_refuses_two_entities_with_one_prefix_or_a_bad_prefix() -> None:
    w = make_world()
    EntityBillingSettings.objects.create(legal_entity=w.usd.legal_entity, document_prefix="US")
    with pytest.raises(IntegrityError), transaction.atomic():
        EntityBillingSettings.objects.create(legal_entity=w.eur.legal_entity, document_prefix="US")
    with pytest.raises(IntegrityError), transaction.atomic():
        EntityBillingSettings.objects.create(
            legal_entity=w.jpy.legal_entity, document_prefix="us-1"
        )
    # blank (no prefix) may be shared
    EntityBillingSettings.objects.create(legal_entity=w.jpy.legal_entity)
    EntityBillingSettings.objects.create(legal_entity=w.bhd.legal_entity)
