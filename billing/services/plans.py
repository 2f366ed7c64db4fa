"""Price plans and their versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import transaction

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.models import (
    PricePlan,
    PricePlanVersion,
)
from billing.rating import (
    RatingError,
    RatingResult,
    Usage,
    components_from_config,
    overrides_from_dict,
    rate_period,
)
from billing.money import ROUND_HALF_UP
from billing.services._shared import claim_action_key, entity_rounding, rating_error
from core.actors import Actor
from core.errors import AppError
from core.models import Currency, LegalEntity
from exceptions.services import audit_record


@dataclass(frozen=True, kw_only=True)
class VersionTerms:
    """What a plan version says: its prices from a local date (see `price_plan_version_add`)."""

    effective_from: date
    components: list[dict[str, Any]]
    component_meta: dict[str, Any] | None = None
    note: str = ""


def price_plan_create(
    *,
    code: str,
    name: str,
    currency: Currency,
    actor: Actor,
    default_tax_code: str = "standard",
    first_version: VersionTerms | None = None,
    idempotency_key: str | None = None,
) -> PricePlan:
    """A new plan and, when given, its first version, in one transaction (both or neither).
    `idempotency_key`: as for the invoice actions (a second use is told, nothing applied)."""
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="price_plan_create",
            actor=actor,
            subject=f"price plan {code}",
        )
        plan = PricePlan(code=code, name=name, currency=currency, default_tax_code=default_tax_code)
        plan.full_clean()
        plan.save()
        audit_record(
            actor=actor,
            action=BillingAuditAction.PRICE_PLAN_CREATE,
            obj=plan,
            after={"code": code, "currency": currency.code, "default_tax_code": default_tax_code},
        )
        if first_version is not None:
            price_plan_version_add(
                plan=plan,
                effective_from=first_version.effective_from,
                components=first_version.components,
                component_meta=first_version.component_meta,
                note=first_version.note,
                actor=actor,
            )
    return plan


def price_plan_version_add(
    *,
    plan: PricePlan,
    effective_from: date,
    components: list[dict[str, Any]],
    actor: Actor,
    component_meta: dict[str, Any] | None = None,
    note: str = "",
    idempotency_key: str | None = None,
) -> PricePlanVersion:
    """A new version of the plan's prices from `effective_from` (after the latest version's date).
    `idempotency_key`: as for the invoice actions."""
    try:
        parsed = components_from_config(components)
    except RatingError as exc:
        raise rating_error(exc, BillingErrorCode.INVALID_PLAN) from None
    meta = component_meta or {}
    codes = {c.code for c in parsed}
    unknown = sorted(set(meta) - codes)
    if unknown:
        raise AppError(
            f"component_meta names unknown component(s): {', '.join(unknown)}.",
            code=BillingErrorCode.INVALID_PLAN,
            extra={"path": "component_meta"},
        )
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="price_plan_version_add",
            actor=actor,
            subject=f"price plan {plan.code}",
        )
        PricePlan.objects.select_for_update().get(pk=plan.pk)
        latest = plan.versions.order_by("-effective_from").first()
        if latest is not None and effective_from <= latest.effective_from:
            raise AppError(
                f"A new version must start after {latest.effective_from} (version {latest.version}).",
                code=BillingErrorCode.PLAN_VERSION_ORDER,
                extra={"latest_effective_from": str(latest.effective_from)},
            )
        version = PricePlanVersion(
            plan=plan,
            version=(latest.version + 1) if latest else 1,
            effective_from=effective_from,
            components=[c.to_dict() for c in parsed],
            component_meta=meta,
            note=note,
        )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action=BillingAuditAction.PRICE_PLAN_VERSION_ADD,
            obj=plan,
            after={
                "version": version.version,
                "effective_from": str(effective_from),
                "components": version.components,
                "component_meta": meta,
            },
        )
    return version


def _tuple_or_none(values: Sequence[Decimal] | None) -> tuple[Decimal, ...] | None:
    return None if values is None else tuple(values)


def price_plan_preview(
    *,
    components: list[dict[str, Any]],
    currency: Currency,
    quantities: Mapping[str, Decimal],
    event_amounts: Mapping[str, Sequence[Decimal]] | None = None,
    overrides: dict[str, Any] | None = None,
    legal_entity: LegalEntity | None = None,
) -> RatingResult:
    """What `components` (and contract `overrides`) would charge for these usage figures.

    Writes nothing: the editors' preview. One whole period (fixed fees unprorated), rounded
    to the currency's minor units in `legal_entity`'s rounding mode, as its billing run rounds
    (`entity_rounding`; half-up without an entity), by the rating engine that bills. Invalid
    components or usage raise the `AppError` that `price_plan_version_add` would
    (`billing_invalid_plan`, the path in `extra`).
    """
    amounts = event_amounts or {}
    try:
        usages = {
            metric: Usage(
                quantity=quantities.get(metric, Decimal(0)),
                event_amounts=_tuple_or_none(amounts.get(metric)),
            )
            for metric in {*quantities, *amounts}
        }
        return rate_period(
            components=components_from_config(components),
            usages=usages,
            minor_units=currency.minor_units,
            rounding=entity_rounding(legal_entity) if legal_entity else ROUND_HALF_UP,
            overrides=overrides_from_dict(overrides) if overrides else None,
        )
    except RatingError as exc:
        raise rating_error(exc, BillingErrorCode.INVALID_PLAN) from None
