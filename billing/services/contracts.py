"""Contracts, amendments and the terms they put in force over time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.models import (
    Cadence,
    Contract,
    ContractAmendment,
    DocumentKind,
    PricePlan,
    PricePlanVersion,
)
from billing.periods import cadence_of
from billing.rating import RatingError, components_from_config, overrides_from_dict, rate_period
from billing.services._shared import ZERO, claim_action_key, rating_error
from billing.terms import ContractTerms, PlanCache, TermsChange
from core.actors import Actor
from core.errors import AppError, Conflict
from core.models import Currency, Customer
from exceptions.services import audit_record

# --------------------------------------------------------------------------- contracts


def _check_overrides(*, plan: PricePlan, overrides: dict[str, Any], on: date) -> None:
    try:
        parsed = overrides_from_dict(overrides or {})
    except RatingError as exc:
        raise rating_error(exc, BillingErrorCode.INVALID_OVERRIDES) from None
    version = plan.versions.filter(effective_from__lte=on).order_by("-effective_from").first()
    version = version or plan.versions.order_by("effective_from").first()
    if version is None:
        raise AppError(
            f"Plan {plan.code} has no price version yet.", code=BillingErrorCode.INVALID_PLAN
        )
    try:  # overrides must name components of the plan and fit their types
        rate_period(
            components=components_from_config(version.components),
            usages={},
            minor_units=plan.currency.minor_units,
            overrides=parsed,
        )
    except RatingError as exc:
        raise rating_error(exc, BillingErrorCode.INVALID_OVERRIDES) from None


def contract_create(
    *,
    code: str,
    customer: Customer,
    plan: PricePlan,
    start_date: date,
    actor: Actor,
    end_date: date | None = None,
    cadence: str = Cadence.MONTHLY,
    anchor_day: int = 1,
    anchor_month: int = 1,
    overrides: dict[str, Any] | None = None,
    prepaid_balance: Decimal = ZERO,
    currency: Currency | None = None,
    idempotency_key: str | None = None,
) -> Contract:
    """A new contract. `idempotency_key`: as for the invoice actions."""
    currency = currency or plan.currency
    if currency.pk != plan.currency_id:
        raise AppError(
            f"Plan {plan.code} is priced in {plan.currency_id}, the contract in {currency.code}.",
            code=BillingErrorCode.CURRENCY_MISMATCH,
        )
    _check_overrides(plan=plan, overrides=overrides or {}, on=start_date)
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key, action="contract_create", actor=actor, subject=f"contract {code}"
        )
        contract = Contract(
            code=code,
            customer=customer,
            legal_entity_id=customer.legal_entity_id,
            currency=currency,
            plan=plan,
            overrides=overrides or {},
            cadence=cadence,
            anchor_day=anchor_day,
            anchor_month=anchor_month,
            start_date=start_date,
            end_date=end_date,
            prepaid_balance=prepaid_balance,
        )
        try:
            contract.full_clean()
        except ValidationError as exc:
            raise AppError(
                "The contract is not valid; see extra.fields.",
                code=BillingErrorCode.INVALID_CONTRACT,
                extra={"fields": exc.message_dict},
            ) from None
        contract.save()
        audit_record(
            actor=actor,
            action=BillingAuditAction.CONTRACT_CREATE,
            obj=contract,
            after=_contract_snapshot(contract),
        )
    return contract


def _contract_snapshot(c: Contract) -> dict[str, Any]:
    return {
        "code": c.code,
        "customer": c.customer_id,
        "plan": c.plan_id,
        "currency": c.currency_id,
        "overrides": c.overrides,
        "cadence": c.cadence,
        "anchor_day": c.anchor_day,
        "anchor_month": c.anchor_month,
        "start_date": str(c.start_date),
        "end_date": None if c.end_date is None else str(c.end_date),
        "prepaid_balance": str(c.prepaid_balance),
    }


def contract_amend(
    *,
    contract: Contract,
    effective_from: date,
    reason: str,
    actor: Actor,
    plan: PricePlan | None = None,
    overrides: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> ContractAmendment:
    """New terms from `effective_from`; refused inside a period already invoiced.
    `idempotency_key`: as for the invoice actions."""
    if not reason.strip():
        raise AppError("An amendment needs a reason.", code=BillingErrorCode.REASON_REQUIRED)
    if plan is None and overrides is None:
        raise AppError(
            "An amendment changes the plan, the overrides or both.",
            code=BillingErrorCode.INVALID_CONTRACT,
        )
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="contract_amend",
            actor=actor,
            subject=f"contract {contract.code}",
        )
        contract = Contract.objects.select_for_update().get(pk=contract.pk)
        if effective_from <= contract.start_date or (
            contract.end_date and effective_from >= contract.end_date
        ):
            raise AppError(
                "The amendment must take effect inside the contract's term.",
                code=BillingErrorCode.INVALID_CONTRACT,
            )
        if plan is not None and plan.currency_id != contract.currency_id:
            raise AppError(
                f"Plan {plan.code} is priced in {plan.currency_id}, the contract in "
                f"{contract.currency_id}.",
                code=BillingErrorCode.CURRENCY_MISMATCH,
            )
        billed = contract.invoices.filter(
            kind=DocumentKind.INVOICE, period_end__gt=effective_from
        ).first()
        if billed is not None:
            raise AppError(
                f"{effective_from} falls in {billed.period_start}..{billed.period_end}, already invoiced "
                f"({billed}); correct that invoice with a credit memo instead.",
                code=BillingErrorCode.AMENDMENT_IN_BILLED_PERIOD,
                extra={"invoice_id": billed.pk},
            )
        taken = contract.amendments.filter(effective_from=effective_from).first()
        if taken is not None:  # a double submit, or a second change for the same day
            raise Conflict(
                f"Contract {contract.code} already has an amendment from {effective_from} "
                f"(reason \u201c{taken.reason[:80]}\u201d); nothing was changed.",
                code=BillingErrorCode.INVALID_CONTRACT,
                extra={"amendment_id": taken.pk, "field": "effective_from"},
            )
        effective_plan = plan or _terms_on(contract, effective_from)[0]
        if overrides is not None:
            _check_overrides(plan=effective_plan, overrides=overrides, on=effective_from)
        amendment = ContractAmendment(
            contract=contract,
            effective_from=effective_from,
            plan=plan,
            overrides=overrides,
            reason=reason,
        )
        amendment.full_clean()
        amendment.save()
        audit_record(
            actor=actor,
            action=BillingAuditAction.CONTRACT_AMEND,
            obj=contract,
            reason=reason,
            after={
                "effective_from": str(effective_from),
                "plan": plan.pk if plan else None,
                "overrides": overrides,
            },
        )
    return amendment


def contract_end(
    *,
    contract: Contract,
    end_date: date,
    reason: str,
    actor: Actor,
    idempotency_key: str | None = None,
) -> Contract:
    """End a contract on `end_date` (exclusive); refused inside or before an invoiced period, and
    on or before an amendment's effective date (the amendment would fall outside the term).

    Fixed fees already billed in advance for the period containing the end date are not
    re-billed: issue a credit memo for the unused part.
    """
    if not reason.strip():
        raise AppError("Ending a contract needs a reason.", code=BillingErrorCode.REASON_REQUIRED)
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="contract_end",
            actor=actor,
            subject=f"contract {contract.code}",
        )
        contract = Contract.objects.select_for_update().get(pk=contract.pk)
        if end_date <= contract.start_date:
            raise AppError(
                "The end date must be after the start date.", code=BillingErrorCode.INVALID_CONTRACT
            )
        billed = contract.invoices.filter(
            kind=DocumentKind.INVOICE, period_end__gt=end_date
        ).first()
        if billed is not None:
            raise AppError(
                f"{end_date} falls in or before {billed.period_start}..{billed.period_end}, already invoiced "
                f"({billed}).",
                code=BillingErrorCode.AMENDMENT_IN_BILLED_PERIOD,
                extra={"invoice_id": billed.pk},
            )
        late = (
            contract.amendments.filter(effective_from__gte=end_date)
            .order_by("effective_from")
            .first()
        )
        if late is not None:  # contract_amend keeps amendments inside the term; so does this
            raise AppError(
                f"An amendment takes effect on {late.effective_from}, on or after {end_date}: the contract "
                f"must end after {late.effective_from}.",
                code=BillingErrorCode.INVALID_CONTRACT,
                extra={"amendment_effective_from": str(late.effective_from)},
            )
        before = None if contract.end_date is None else str(contract.end_date)
        contract.end_date = end_date
        contract.save(update_fields=["end_date"])
        audit_record(
            actor=actor,
            action=BillingAuditAction.CONTRACT_END,
            obj=contract,
            reason=reason,
            before={"end_date": before},
            after={"end_date": str(end_date)},
        )
    return contract


def _terms_on(contract: Contract, day: date) -> tuple[PricePlan, dict[str, Any]]:
    plan, overrides = contract.plan, contract.overrides
    for a in contract.amendments.filter(effective_from__lte=day).order_by("effective_from"):
        plan = a.plan or plan
        overrides = a.overrides if a.overrides is not None else overrides
    return plan, overrides


def contract_terms(contracts: Sequence[Contract]) -> dict[int, ContractTerms]:
    """Terms over time of many contracts (one query for all amendments)."""
    amendments: dict[int, list[ContractAmendment]] = defaultdict(list)
    for a in ContractAmendment.objects.filter(contract__in=[c.pk for c in contracts]).order_by(
        "effective_from"
    ):
        amendments[a.contract_id].append(a)
    out = {}
    for c in contracts:
        changes = [
            TermsChange(effective_from=c.start_date, plan_id=c.plan_id, overrides=c.overrides or {})
        ]
        for a in amendments.get(c.pk, ()):
            prev = changes[-1]
            changes.append(
                TermsChange(
                    effective_from=a.effective_from,
                    plan_id=a.plan_id or prev.plan_id,
                    overrides=a.overrides if a.overrides is not None else prev.overrides,
                )
            )
        out[c.pk] = ContractTerms(
            contract_id=c.pk,
            customer_id=c.customer_id,
            start_date=c.start_date,
            end_date=c.end_date,
            cadence=cadence_of(c.cadence),
            anchor_day=c.anchor_day,
            anchor_month=c.anchor_month,
            changes=tuple(changes),
        )
    return out


def plan_cache(plan_ids: Iterable[int]) -> PlanCache:
    cache = PlanCache()
    ids = set(plan_ids)
    for plan in PricePlan.objects.filter(pk__in=ids):
        cache.default_tax_codes[plan.pk] = plan.default_tax_code
    for v in PricePlanVersion.objects.filter(plan__in=ids):
        cache.add_version(
            plan_id=v.plan_id,
            version_id=v.pk,
            effective_from=v.effective_from,
            components=v.components,
            component_meta=v.component_meta,
        )
    return cache
