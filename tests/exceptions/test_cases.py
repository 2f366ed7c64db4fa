from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from exceptions.models import AuditEntry, CaseStatus, ExceptionCase
from core.actors import Actor
from exceptions.services import case_close, case_open_or_update

pytestmark = pytest.mark.django_db


def _open(**kw: Any) -> tuple[ExceptionCase, bool]:
    args: dict[str, Any] = dict(
        kind="unmapped_customer",
        fingerprint="unmapped:shop:cust-9",
        title="Unmapped customer cust-9",
        actor=Actor.system("tests"),
        error_message="no mapping for cust-9",
    )
    args.update(kw)
    return case_open_or_update(**args)


def test_the_same_failure_counts_on_one_open_case(entity_us, customer_acme) -> None:
    case, created = _open(
        occurrences=3,
        amount_at_stake=Decimal("12.50"),
        currency_id="USD",
        legal_entity_id=entity_us.pk,
        customer_id=customer_acme.pk,
    )
    assert created and case.occurrence_count == 3
    again, created_again = _open(occurrences=2)
    assert not created_again and again.pk == case.pk
    assert again.occurrence_count == 5
    assert ExceptionCase.objects.count() == 1
    assert list(AuditEntry.objects.order_by("seq").values_list("action", flat=True)) == [
        "case.open",
        "case.recur",
    ]


def test_a_closed_case_does_not_swallow_a_new_failure() -> None:
    case, _ = _open()
    case_close(
        case=case,
        actor=Actor.system("tests"),
        status=CaseStatus.RESOLVED,
        resolution="mapping added",
    )
    new, created = _open()
    assert created and new.pk != case.pk


def test_closing_needs_a_reason() -> None:
    case, _ = _open()
    with pytest.raises(ValueError, match="why"):
        case_close(
            case=case, actor=Actor.system("tests"), status=CaseStatus.RESOLVED, resolution=" "
        )


def test_database_refuses_two_open_cases_for_one_fingerprint() -> None:
    _open()
    with pytest.raises(IntegrityError), transaction.atomic():
        ExceptionCase.objects.create(
            kind="k",
            fingerprint="unmapped:shop:cust-9",
            title="dup",
            first_seen_at="2026-01-01T00:00Z",
            last_seen_at="2026-01-01T00:00Z",
        )


def test_database_refuses_an_amount_without_currency() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ExceptionCase.objects.create(
            kind="k",
            fingerprint="f",
            title="t",
            amount_at_stake=Decimal("1"),
            first_seen_at="2026-01-01T00:00Z",
            last_seen_at="2026-01-01T00:00Z",
        )
