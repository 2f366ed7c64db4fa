"""Writes of the core app: API keys and master data."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from core import error_codes
from core.errors import AppError
from core.models import ApiKey, ApiScope, Currency, Customer, LegalEntity
from core.actors import Actor
from exceptions.services import audit_record

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
            code=error_codes.INVALID_SCOPE,
        )
    if not name.strip():
        raise AppError("An API key needs a name.", code=error_codes.VALIDATION_FAILED)
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
            action="api_key.create",
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
            action="api_key.revoke",
            obj=key,
            before={"revoked": False},
            after={"revoked": True},
            reason=reason,
        )
    return key


def currency_ensure(*, code: str, name: str, minor_units: int) -> Currency:
    obj, _ = Currency.objects.update_or_create(
        code=code, defaults={"name": name, "minor_units": minor_units}
    )
    return obj


def legal_entity_create(
    *, code: str, name: str, base_currency: Currency, country: str, timezone_name: str, actor: Actor
) -> LegalEntity:
    with transaction.atomic():
        entity = LegalEntity(
            code=code,
            name=name,
            base_currency=base_currency,
            country=country,
            timezone=timezone_name,
        )
        entity.full_clean()
        entity.save()
        audit_record(
            actor=actor,
            action="legal_entity.create",
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
            external_refs=external_refs or {},
        )
        customer.full_clean()
        customer.save()
        audit_record(
            actor=actor,
            action="customer.create",
            obj=customer,
            after={"code": code, "legal_entity": legal_entity.code},
        )
    return customer
