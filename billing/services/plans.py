"""Price plans and their versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import transaction

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.models import (
    PricePlan,
    PricePlanVersion,
)
from billing.rating import RatingError, components_from_config
from billing.services._shared import rating_error
from core.actors import Actor
from core.errors import AppError
from core.models import Currency
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
) -> PricePlan:
    """A new plan and, when given, its first version, in one transaction (both or neither)."""
    with transaction.atomic():
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
) -> PricePlanVersion:
    """A new version of the plan's prices from `effective_from` (after the latest version's date)."""
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
