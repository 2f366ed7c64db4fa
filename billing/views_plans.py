"""The plan and contract editors: price plans, their versions, contracts, overrides, amendments.

Forms, not JSON boxes: one formset row per component, per override and per tier
(billing/forms.py). Every save goes through the service the API uses
(`price_plan_create`, `price_plan_version_add`, `contract_create`, `contract_amend`), so it is
validated by the rating configuration and audited as before; its errors are shown next to
the field they name. "Preview" prices the usage figures typed, through the rating engine,
and stores nothing.

Who may do what (checked here, on the server):
  edit plans and contracts      integration_admin
  see the plan and contract lists   integration_admin, auditor
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.forms import Form, formset_factory
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from billing import selectors, services
from billing.error_codes import BillingErrorCode
from billing.forms import (
    AmendmentForm,
    ComponentForm,
    ContractForm,
    PlanForm,
    Row,
    RowList,
    UsageForm,
    VersionForm,
    attach_error,
    override_lists,
    overrides_json,
    rows_from_json,
)
from billing.models import PricePlan, Rounding
from billing.rating import RatingError, RatingResult, component_from_dict
from core.actors import Actor
from core.errors import AppError
from core.form_input import check_int, form_int, form_token
from core.models import Currency, LegalEntity
from core.roles import AUDITOR, INTEGRATION_ADMIN, role_required, user_roles

F = TypeVar("F", bound=Form)
EDITORS = (INTEGRATION_ADMIN,)
READERS = (INTEGRATION_ADMIN, AUDITOR)
UsageFormSet = formset_factory(UsageForm, extra=0)
#: Empty usage rows the preview offers.
PREVIEW_ROWS = 3


def _action(request: HttpRequest) -> str:
    """Which button was pressed: save, preview, apply, add_component, add_tier, add_<list>."""
    for name in ("save", "preview", "add_component", "add_tier"):
        if name in request.POST:
            return name
    for name in request.POST:
        if name.startswith("add_") and name.endswith("_row"):
            return name
    return "apply"


def _form(cls: type[F], request: HttpRequest, action: str) -> F:
    """Bound (checked) for save and preview; for adding or reordering rows, only refilled."""
    if action in ("save", "preview"):
        return cls(request.POST)
    return cls(initial=request.POST.dict())


def _add_tier_index(request: HttpRequest) -> int:
    index = form_int(request.POST, "add_tier", label="The row", high=1000, required=False)
    return -1 if index is None else index


def _usage_formset(request: HttpRequest, metrics: list[str]) -> Any:
    if request.method == "POST" and "usage-TOTAL_FORMS" in request.POST:
        return UsageFormSet(request.POST, prefix="usage")
    initial = [{"metric": m} for m in metrics] or [{}] * PREVIEW_ROWS
    return UsageFormSet(initial=initial, prefix="usage")


def _preview_usage(
    formset: Any,
) -> tuple[dict[str, Decimal], dict[str, list[Decimal]]] | None:
    """Quantities and event amounts typed per metric (None: a figure is not a number)."""
    if not formset.is_valid():
        return None
    quantities: dict[str, Decimal] = {}
    amounts: dict[str, list[Decimal]] = {}
    for form in formset.forms:
        metric = (form.cleaned_data.get("metric") or "").strip()
        if not metric:
            continue
        if form.cleaned_data.get("quantity") is not None:
            quantities[metric] = form.cleaned_data["quantity"]
        raw = (form.cleaned_data.get("event_amounts") or "").strip()
        if raw:
            try:
                amounts[metric] = [Decimal(a.strip()) for a in raw.split(",") if a.strip()]
            except InvalidOperation:
                form.add_error("event_amounts", "Type amounts as numbers, e.g. 12.50, 40.")
                return None
    return quantities, amounts


def _rating_failed(exc: AppError, lists: dict[str, RowList], errors: list[str]) -> None:
    """Show a service's refusal next to the field its path names, else above the form."""
    path = str(exc.extra.get("path", "")) if exc.extra else ""
    if not (path and attach_error(lists, path, exc.message)):
        errors.append(f"{exc.message} ({exc.code})")


def _check_rows(lists: dict[str, RowList]) -> None:
    """Each component row checked alone by the rating config, so every bad row says so at once."""
    components = lists[""]
    for index, item in enumerate(components.to_json()):
        try:
            component_from_dict(item, path=f"[{index}]")
        except RatingError as exc:
            attach_error(lists, exc.path, exc.message)


# --------------------------------------------------------------------------- plans


@role_required(*READERS)
def plan_list(request: HttpRequest) -> HttpResponse:
    plans = [(p, list(p.versions.all())) for p in selectors.price_plans().order_by("code")]
    return render(
        request,
        "billing/plan_list.html",
        {"plans": plans, "can_edit": INTEGRATION_ADMIN in _roles(request)},
    )


def _roles(request: HttpRequest) -> set[str]:
    return user_roles(request.user)


@role_required(*EDITORS)
def plan_edit(request: HttpRequest, code: str | None = None) -> HttpResponse:
    """Create a plan (``code`` None) or a new version of plan ``code``, component by component."""
    plan = get_object_or_404(PricePlan, code=code) if code else None
    latest = plan.versions.order_by("-effective_from").first() if plan else None
    components = RowList(ComponentForm, "components", tiers=True)
    lists = {"": components}
    errors: list[str] = []
    preview: RatingResult | None = None
    if request.method == "POST":
        action = _action(request)
        plan_form = _form(PlanForm, request, action) if plan is None else None
        version_form = _form(VersionForm, request, action)
        components.read(request.POST)
        if action == "add_component":
            components.add()
        elif action == "add_tier":
            components.add_tier(_add_tier_index(request))
        components.bind()
        usage = _usage_formset(request, [])
        if action in ("save", "preview"):
            _check_rows(lists)
        if action == "preview" and not components.has_errors:
            figures = _preview_usage(usage)
            currency = _plan_currency(plan, plan_form)
            if figures is not None and currency is not None:
                try:
                    preview = services.price_plan_preview(
                        components=components.to_json(),
                        currency=currency,
                        quantities=figures[0],
                        event_amounts=figures[1],
                        legal_entity=_preview_entity(request, currency),
                    )
                except AppError as exc:
                    _rating_failed(exc, lists, errors)
            elif currency is None:
                errors.append("Choose the plan's currency to preview a price.")
        if action == "save" and not components.has_errors:
            saved = _save_plan(request, plan, plan_form, version_form, components, errors)
            if saved is not None:
                return redirect("billing:plans")
    else:
        plan_form = PlanForm() if plan is None else None
        version_form = VersionForm(initial={"note": ""})
        rows = rows_from_json(latest.components, latest.component_meta) if latest else []
        components.load(rows or [_blank_row()]).bind()
        usage = _usage_formset(request, _metrics(components))
    return render(
        request,
        "billing/plan_edit.html",
        {
            "plan": plan,
            "latest": latest,
            "plan_form": plan_form,
            "version_form": version_form,
            "components": components,
            "usage": usage,
            "errors": errors,
            "preview": preview,
            "currency": _plan_currency(plan, plan_form),
            "entities": LegalEntity.objects.order_by("code"),
            **_rounds_as(_preview_entity(request, _plan_currency(plan, plan_form))),
        },
        status=_status(request, [plan_form, version_form], [components], errors, usage),
    )


def _status(
    request: HttpRequest,
    forms: list[Form | None],
    lists: list[RowList],
    errors: list[str],
    usage: Any = None,
) -> int:
    """400 when a POST comes back with an error to show next to its field (a refused value, a
    service's refusal): nothing was saved; 200 otherwise (a first view, an added row)."""
    if request.method != "POST":
        return 200
    refused = (
        bool(errors)
        or any(f is not None and f.is_bound and bool(f.errors) for f in forms)
        or any(rows.has_errors for rows in lists)
        or (usage is not None and usage.is_bound and usage.total_error_count() > 0)
    )
    return 400 if refused else 200


def _rounds_as(entity: LegalEntity | None) -> dict[str, Any]:
    """The preview's note of whose rounding it used ("ll-de: Half even (0.125 → 0.12)")."""
    if entity is None:
        return {"rounds_as": None}
    return {"rounds_as": entity, "rounding": Rounding(services.entity_rounding(entity)).label}


def _preview_entity(request: HttpRequest, currency: Currency | None) -> LegalEntity | None:
    """The entity whose rounding the plan preview uses: the one chosen, else the first whose
    base currency is the plan's (a plan belongs to no entity; each bills in its own mode)."""
    chosen = request.POST.get("preview_entity", "")
    entities = LegalEntity.objects.order_by("code")
    if chosen:
        return entities.filter(code=chosen).first()
    return entities.filter(base_currency=currency).first() if currency else None


def _blank_row() -> Row:
    return Row(values={})


def _metrics(rows: RowList) -> list[str]:
    seen: list[str] = []
    for row in rows.rows:
        metric = row.values.get("metric", "")
        if metric and metric not in seen:
            seen.append(metric)
    return seen


def _plan_currency(plan: PricePlan | None, form: PlanForm | None) -> Currency | None:
    if plan is not None:
        return plan.currency
    if form is not None and form.is_valid():
        currency: Currency = form.cleaned_data["currency"]
        return currency
    return None


def _save_plan(
    request: HttpRequest,
    plan: PricePlan | None,
    plan_form: PlanForm | None,
    version_form: VersionForm,
    components: RowList,
    errors: list[str],
) -> PricePlan | None:
    forms_ok = version_form.is_valid() and (plan_form is None or plan_form.is_valid())
    if not forms_ok:
        return None
    actor = Actor.for_user(request.user)
    key = form_token(request.POST)  # required: a double save is applied once, the second told
    v = version_form.cleaned_data
    terms = services.VersionTerms(
        effective_from=v["effective_from"],
        components=components.to_json(),
        component_meta=components.meta_json(),
        note=v["note"],
    )
    try:
        if plan is None:
            assert plan_form is not None
            p = plan_form.cleaned_data
            plan = services.price_plan_create(
                code=p["code"],
                name=p["name"],
                currency=p["currency"],
                default_tax_code=p["default_tax_code"],
                first_version=terms,
                actor=actor,
                idempotency_key=key,
            )
            messages.success(request, f"Price plan {plan.code} created with version 1.")
        else:
            version = services.price_plan_version_add(
                plan=plan,
                effective_from=terms.effective_from,
                components=terms.components,
                component_meta=terms.component_meta,
                note=terms.note,
                actor=actor,
                idempotency_key=key,
            )
            messages.success(
                request,
                f"Version {version.version} of {plan.code} added, from {version.effective_from}.",
            )
        return plan
    except ValidationError as exc:  # the plan's own fields (a code already taken)
        if plan_form is not None and hasattr(exc, "error_dict"):
            for name, errs in exc.error_dict.items():
                plan_form.add_error(name if name in plan_form.fields else None, errs)
        else:
            errors.extend(exc.messages)
    except AppError as exc:
        if exc.code == BillingErrorCode.PLAN_VERSION_ORDER:
            version_form.add_error("effective_from", exc.message)
        else:
            _rating_failed(exc, {"": components}, errors)
    return None


# --------------------------------------------------------------------------- contracts


@role_required(*READERS)
def contract_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "billing/contract_list.html",
        {
            "contracts": selectors.contracts()[:500],
            "can_edit": INTEGRATION_ADMIN in _roles(request),
        },
    )


def _overrides_preview(
    request: HttpRequest,
    plan: PricePlan,
    on: date,
    lists: dict[str, RowList],
    errors: list[str],
    legal_entity: LegalEntity,
) -> dict[str, Any]:
    """The plan's version in force on `on` with the overrides typed, pricing the usage typed,
    rounded as the contract's entity bills."""
    usage = _usage_formset(request, [])
    out: dict[str, Any] = {"usage": usage, "currency": plan.currency, **_rounds_as(legal_entity)}
    version = selectors.plan_version_on(plan=plan, day=on)
    figures = _preview_usage(usage)
    if version is None:
        errors.append(f"Plan {plan.code} has no price version yet.")
    elif figures is not None and not any(rows.has_errors for rows in lists.values()):
        try:
            out["preview"] = services.price_plan_preview(
                components=version.components,
                currency=plan.currency,
                quantities=figures[0],
                event_amounts=figures[1],
                overrides=overrides_json(lists),
                legal_entity=legal_entity,
            )
            out["preview_version"] = version
        except AppError as exc:
            _rating_failed(exc, lists, errors)
    return out


def _read_overrides(request: HttpRequest) -> dict[str, RowList]:
    lists = override_lists()
    for name, rows in lists.items():
        rows.read(request.POST)
        if f"add_{name}_row" in request.POST:
            rows.add()
        if request.POST.get("add_tier", "").startswith(f"{name}:"):
            index = request.POST["add_tier"].split(":", 1)[1]
            rows.add_tier(check_int("add_tier", index, label="The row", high=1000))
        rows.bind()
    return lists


def _lists_refused(lists: dict[str, RowList]) -> bool:
    return any(rows.has_errors for rows in lists.values())


def _bound_overrides(overrides: dict[str, Any] | None) -> dict[str, RowList]:
    lists = override_lists()
    for name, rows in lists.items():
        rows.load(rows_from_json(list((overrides or {}).get(name) or []))).bind()
    return lists


@role_required(*EDITORS)
def contract_edit(request: HttpRequest) -> HttpResponse:
    """A new contract with its overrides (negotiated prices, discounts, caps) as rows."""
    errors: list[str] = []
    preview: dict[str, Any] = {"usage": _usage_formset(request, [])}
    if request.method == "POST":
        form = _form(ContractForm, request, _action(request))
        lists = _read_overrides(request)
        if "preview" in request.POST and form.is_valid():
            v = form.cleaned_data
            preview = _overrides_preview(
                request, v["plan"], v["start_date"], lists, errors, v["customer"].legal_entity
            )
        if "save" in request.POST and form.is_valid() and not _lists_refused(lists):
            data = dict(form.cleaned_data)
            key = form_token(request.POST)  # required: a double save is applied once
            try:
                contract = services.contract_create(
                    actor=Actor.for_user(request.user),
                    overrides=overrides_json(lists),
                    idempotency_key=key,
                    **data,
                )
                messages.success(request, f"Contract {contract.code} created.")
                return redirect("billing:contracts")
            except AppError as exc:
                fields = (exc.extra or {}).get("fields")
                if isinstance(fields, dict):
                    for name, errs in fields.items():
                        form.add_error(name if name in form.fields else None, errs)
                else:
                    _rating_failed(exc, lists, errors)
    else:
        form = ContractForm()
        lists = _bound_overrides({})
    return render(
        request,
        "billing/contract_edit.html",
        {"form": form, "lists": lists, "errors": errors, "contract": None, **preview},
        status=_status(request, [form], list(lists.values()), errors, preview.get("usage")),
    )


@role_required(*EDITORS)
def contract_amend(request: HttpRequest, pk: int) -> HttpResponse:
    """New terms from a date: another plan, other overrides, or both (a reason is required)."""
    contract = get_object_or_404(selectors.contracts(), pk=pk)
    errors: list[str] = []
    preview: dict[str, Any] = {"usage": _usage_formset(request, [])}
    if request.method == "POST":
        form = _form(AmendmentForm, request, _action(request))
        lists = _read_overrides(request)
        if "preview" in request.POST and form.is_valid():
            v = form.cleaned_data
            plan = v["plan"] or contract.plan
            preview = _overrides_preview(
                request, plan, v["effective_from"], lists, errors, contract.legal_entity
            )
        if "save" in request.POST and form.is_valid() and not _lists_refused(lists):
            v = form.cleaned_data
            key = form_token(request.POST)  # required: a double save is applied once
            try:
                amendment = services.contract_amend(
                    contract=contract,
                    effective_from=v["effective_from"],
                    reason=v["reason"],
                    plan=v["plan"],
                    overrides=overrides_json(lists) if v["change_overrides"] else None,
                    actor=Actor.for_user(request.user),
                    idempotency_key=key,
                )
                messages.success(
                    request,
                    f"Contract {contract.code} amended from {amendment.effective_from}.",
                )
                return redirect("billing:contracts")
            except AppError as exc:
                if exc.code == BillingErrorCode.REASON_REQUIRED:
                    form.add_error("reason", exc.message)
                elif exc.extra and exc.extra.get("path") is not None:
                    _rating_failed(exc, lists, errors)
                else:
                    form.add_error("effective_from", f"{exc.message} ({exc.code})")
    else:
        form = AmendmentForm()
        current = contract.amendments.all()
        in_force = contract.overrides
        for a in current:
            in_force = a.overrides if a.overrides is not None else in_force
        lists = _bound_overrides(in_force)
    return render(
        request,
        "billing/contract_edit.html",
        {"form": form, "lists": lists, "errors": errors, "contract": contract, **preview},
        status=_status(request, [form], list(lists.values()), errors, preview.get("usage")),
    )
