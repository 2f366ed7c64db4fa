"""core's writes reach the audit trail through core.audit, in their own transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from core import audit
from core.actors import Actor
from core.error_codes import CoreErrorCode
from core.models import Customer, LegalEntity
from core.services import customer_create
from exceptions.audit_actions import CaseAction
from exceptions.models import AuditEntry
from exceptions.services import audit_record

# exceptions' audit_record is what the settings wire in: mypy holds it to the port's signature.
_RECORDER: audit.AuditRecorder = audit_record


@pytest.fixture
def fresh_recorder() -> Iterator[None]:
    audit.recorder.cache_clear()
    yield
    audit.recorder.cache_clear()


def test_the_settings_wire_core_to_the_exceptions_audit_trail(fresh_recorder: None) -> None:
    assert audit.recorder() is audit_record


@pytest.mark.django_db
def test_without_a_recorder_a_core_write_fails_and_leaves_nothing(
    fresh_recorder: None, settings: Any, entity_us: LegalEntity
) -> None:
    settings.LEDGERLINE_AUDIT_RECORDER = ""
    with pytest.raises(ImproperlyConfigured, match="LEDGERLINE_AUDIT_RECORDER"):
        customer_create(legal_entity=entity_us, code="c9", name="C9", actor=Actor.system("t"))
    assert not Customer.objects.filter(code="c9").exists()


@pytest.mark.django_db
def test_a_rolled_back_core_write_leaves_no_audit_entry(entity_us: LegalEntity) -> None:
    before = AuditEntry.objects.count()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        customer_create(legal_entity=entity_us, code="c8", name="C8", actor=Actor.system("t"))
        assert AuditEntry.objects.count() == before + 1
        raise Boom
    assert AuditEntry.objects.count() == before
    assert not Customer.objects.filter(code="c8").exists()


def test_error_codes_and_actions_keep_their_values() -> None:
    """They are promises to API clients and to the audit page's filters: never renamed."""
    assert {c.value for c in CoreErrorCode} == {
        "auth_missing",
        "auth_invalid",
        "auth_revoked",
        "scope_missing",
        "permission_denied",
        "throttled",
        "not_found",
        "server_error",
        "method_not_allowed",
        "unsupported_media_type",
        "malformed_request",
        "validation_failed",
        "request_too_large",
        "invalid_scope",
        "invalid_parameter",
        "invalid_input",
    }
    assert {a.value for a in audit.CoreAction} == {
        "api_key.create",
        "api_key.revoke",
        "currency.create",
        "currency.change",
        "legal_entity.create",
        "customer.create",
        "login.lock_out",
    }
    assert {a.value for a in CaseAction} == {
        "case.open",
        "case.recur",
        "case.resolved",
        "case.dismissed",
    }
