"""Writes of ERP connections and their account and party mappings (admin pages and the admin
API call these)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from core.actors import Actor
from core.errors import AppError
from core.models import Customer, LegalEntity
from erp_sync import error_codes
from erp_sync.models import AccountMapping, AccountRole, ErpConnection, PartyMapping
from erp_sync.services.outbox import postings_release_held
from exceptions.models import OPEN_STATUSES, ExceptionCase
from exceptions.services import audit_record, case_close

#: Fields of a connection shown back and audited (never a secret: only its variable's name).
CONNECTION_FIELDS = (
    "name",
    "kind",
    "base_url",
    "database",
    "company",
    "login",
    "password_env",
    "enabled",
    "mode",
    "credit_memo_mode",
    "external_id_prefix",
    "max_attempts",
    "backoff_base_seconds",
    "backoff_cap_seconds",
    "lease_seconds",
    "timeout_seconds",
    "options",
)


def _snapshot(conn: ErpConnection) -> dict[str, Any]:
    return {f: getattr(conn, f) for f in CONNECTION_FIELDS}


def _validated(obj: Any) -> None:
    try:
        obj.full_clean()
    except ValidationError as exc:
        raise AppError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
            code=error_codes.INVALID_CONNECTION,
            extra={"fields": exc.message_dict},
        ) from None


def _known_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(CONNECTION_FIELDS)
    if unknown:
        raise AppError(
            f"unknown connection field(s): {', '.join(sorted(unknown))}",
            code=error_codes.INVALID_CONNECTION,
        )


def connection_create(*, legal_entity: LegalEntity, actor: Actor, **fields: Any) -> ErpConnection:
    _known_fields(fields)
    with transaction.atomic():
        conn = ErpConnection(legal_entity=legal_entity, **fields)
        _validated(conn)
        conn.save()
        audit_record(actor=actor, action="erp_connection.create", obj=conn, after=_snapshot(conn))
    return conn


def connection_update(*, connection: ErpConnection, actor: Actor, **fields: Any) -> ErpConnection:
    _known_fields(fields)
    with transaction.atomic():
        conn = ErpConnection.objects.select_for_update().get(pk=connection.pk)
        before = _snapshot(conn)
        for name, value in fields.items():
            setattr(conn, name, value)
        _validated(conn)
        conn.save()
        after = _snapshot(conn)
        audit_record(
            actor=actor,
            action="erp_connection.update",
            obj=conn,
            before={k: v for k, v in before.items() if after[k] != v},
            after={k: v for k, v in after.items() if before[k] != v},
        )
    return conn


def account_mapping_set(
    *, connection: ErpConnection, role: str, key: str = "", account: str, actor: Actor
) -> AccountMapping:
    """Map one of our accounts (role + key) to the ERP's account code, then release the postings
    held for a missing mapping and resolve the case that asked for this one."""
    if role not in AccountRole.values:
        raise AppError(
            f"unknown account role {role!r} (one of {', '.join(AccountRole.values)})",
            code=error_codes.INVALID_MAPPING,
        )
    account = account.strip()
    if not account:
        raise AppError(
            "An account mapping needs the ERP's account code.", code=error_codes.INVALID_MAPPING
        )
    with transaction.atomic():
        mapping = (
            AccountMapping.objects.select_for_update()
            .filter(connection=connection, role=role, key=key)
            .first()
        )
        before = {"account": mapping.account} if mapping else None
        if mapping is None:
            mapping = AccountMapping(connection=connection, role=role, key=key, account=account)
        mapping.account = account
        mapping.save()
        audit_record(
            actor=actor,
            action="account_mapping.set",
            obj=mapping,
            before=before,
            after={"connection": connection.pk, "role": role, "key": key, "account": account},
        )
        fingerprints = [f"missing_gl_mapping:{connection.pk}:{role}:{key}"]
        if not key:  # a default covers every key of the role
            fingerprints = list(
                ExceptionCase.objects.filter(
                    fingerprint__startswith=f"missing_gl_mapping:{connection.pk}:{role}:",
                    status__in=OPEN_STATUSES,
                ).values_list("fingerprint", flat=True)
            )
        for case in ExceptionCase.objects.filter(
            fingerprint__in=fingerprints, status__in=OPEN_STATUSES
        ):
            case_close(
                case=case,
                actor=actor,
                status="resolved",
                resolution=f"mapped {role}{' ' + key if key else ''} to {account}",
            )
        postings_release_held(connection=connection, actor=actor)
    return mapping


def account_mapping_delete(*, mapping: AccountMapping, actor: Actor) -> None:
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="account_mapping.delete",
            obj=mapping,
            before={"role": mapping.role, "key": mapping.key, "account": mapping.account},
        )
        mapping.delete()


def party_mapping_set(
    *, connection: ErpConnection, customer: Customer, erp_party_id: str, actor: Actor
) -> PartyMapping:
    """Map a customer to an existing ERP party by hand (instead of the connector creating one)."""
    if customer.legal_entity_id != connection.legal_entity_id:
        raise AppError(
            f"{customer.code} belongs to another legal entity than connection {connection.name}.",
            code=error_codes.INVALID_MAPPING,
        )
    if not erp_party_id.strip():
        raise AppError(
            "A party mapping needs the ERP's party id.", code=error_codes.INVALID_MAPPING
        )
    with transaction.atomic():
        mapping, created = PartyMapping.objects.select_for_update().get_or_create(
            connection=connection,
            customer=customer,
            defaults={"erp_party_id": erp_party_id.strip()},
        )
        before = None if created else {"erp_party_id": mapping.erp_party_id}
        mapping.erp_party_id = erp_party_id.strip()
        mapping.created_by_connector = False
        mapping.save()
        audit_record(
            actor=actor,
            action="party_mapping.set",
            obj=mapping,
            before=before,
            after={"customer": customer.code, "erp_party_id": mapping.erp_party_id},
        )
    return mapping
