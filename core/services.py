"""Writes of the core app: API keys and master data.

Each writes its audit entry in its own transaction through `core.audit` (core
does not import the audit trail's app; docs/decisions.md 36).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.audit import CoreAction, audit_record
from core.error_codes import CoreErrorCode
from core.errors import AppError
from core.models import ApiKey, ApiScope, Currency, Customer, LegalEntity

KEY_PREFIX = "ll"


def _hash_secret(secret: str) -> str:
    # Keys are 256-bit random secrets: a plain SHA-256 is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown once, never stored


def api_key_create(*, name: str, scopes: list[str], actor: Actor) -> IssuedKey:
    valid = set(ApiScope.values)
    unknown = [s for s in scopes if s not in valid]
    if unknown or not scopes:
        raise AppError(
            f"Unknown scope(s): {', '.join(unknown) or '(none given)'}. Valid scopes: {', '.join(sorted(valid))}.",
            code=CoreErrorCode.INVALID_SCOPE,
        )
    if not name.strip():
        raise AppError("An API key needs a name.", code=CoreErrorCode.VALIDATION_FAILED)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    raw = f"{KEY_PREFIX}_{prefix}_{secret}"
    with transaction.atomic():
        key = ApiKey(
            name=name.strip(),
            prefix=prefix,
            key_hash=_hash_secret(raw),
            scopes=sorted(set(scopes)),
            created_by_id=actor.user_id,
        )
        key.full_clean()
        key.save()
        audit_record(
            actor=actor,
            action=CoreAction.API_KEY_CREATE,
            obj=key,
            after={"name": key.name, "scopes": key.scopes},
        )
    return IssuedKey(api_key=key, raw_key=raw)


def api_key_lookup(*, raw_key: str) -> ApiKey | None:
    """The key a raw bearer token names, or None. Compares hashes in constant time."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    # Raw SQL: every API request runs this, and compiling the ORM query cost twice the query.
    found = list(
        ApiKey.objects.raw(f"SELECT * FROM {ApiKey._meta.db_table} WHERE prefix = %s", [parts[1]])
    )
    key = found[0] if found else None
    if key is None or not hmac.compare_digest(key.key_hash, _hash_secret(raw_key)):
        return None
    return key


def api_key_revoke(*, api_key: ApiKey, actor: Actor, reason: str = "") -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if key.revoked_at is not None:
            return key
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action=CoreAction.API_KEY_REVOKE,
            obj=key,
            before={"revoked": False},
            after={"revoked": True},
            reason=reason,
        )
    return key


def currency_ensure(*, code: str, name: str, minor_units: int, actor: Actor) -> Currency:
    """The currency `code` with this name and minor units: created, corrected or left as it is.

    An entry is written only when a row was created or changed.
    """
    with transaction.atomic():
        obj = Currency.objects.select_for_update().filter(code=code).first()
        if obj is not None and (obj.name, obj.minor_units) == (name, minor_units):
            return obj
        before = None if obj is None else {"name": obj.name, "minor_units": obj.minor_units}
        after = {"name": name, "minor_units": minor_units}
        if obj is None:
            obj = Currency(code=code)
        obj.name, obj.minor_units = name, minor_units
        obj.full_clean()
        obj.save()
        audit_record(
            actor=actor,
            action=CoreAction.CURRENCY_CREATE if before is None else CoreAction.CURRENCY_CHANGE,
            obj=obj,
            before=before,
            after=after,
        )
    return obj


def legal_entity_create(
    *,
    code: str,
    name: str,
    base_currency: Currency,
    country: str,
    timezone_name: str,
    actor: Actor,
    address: str = "",
    tax_id: str = "",
) -> LegalEntity:
    with transaction.atomic():
        entity = LegalEntity(
            code=code,
            name=name,
            base_currency=base_currency,
            country=country,
            timezone=timezone_name,
            address=address,
            tax_id=tax_id,
        )
        entity.full_clean()
        entity.save()
        audit_record(
            actor=actor,
            action=CoreAction.LEGAL_ENTITY_CREATE,
            obj=entity,
            after={"code": code, "currency": base_currency.code, "timezone": timezone_name},
        )
    return entity


def customer_create(
    *,
    legal_entity: LegalEntity,
    code: str,
    name: str,
    actor: Actor,
    country: str = "",
    tax_exempt: bool = False,
    tax_jurisdiction: str = "",
    email: str = "",
    address: str = "",
    tax_id: str = "",
    external_refs: dict[str, str] | None = None,
) -> Customer:
    with transaction.atomic():
        customer = Customer(
            legal_entity=legal_entity,
            code=code,
            name=name,
            country=country,
            tax_exempt=tax_exempt,
            tax_jurisdiction=tax_jurisdiction,
            email=email,
            address=address,
            tax_id=tax_id,
            external_refs=external_refs or {},
        )
        customer.full_clean()
        customer.save()
        audit_record(
            actor=actor,
            action=CoreAction.CUSTOMER_CREATE,
            obj=customer,
            after={"code": code, "legal_entity": legal_entity.code},
        )
    return customer
