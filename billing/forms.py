"""Forms of the plan and contract editors: formset rows in, the services' JSON out, errors back.

A price plan version is a list of components, some with tiers; contract overrides are lists
of prices (some with tiers), discounts and caps. Each list is a Django formset (one row per
component, per override, per tier), ordered by its ORDER field and with a DELETE box, and a
row's tiers are a formset of their own (prefix ``<row prefix>-tiers``).

Nothing here judges a price: every value goes as typed, as a string, into the JSON that
``billing.services`` takes, and ``billing.rating.config`` validates it as it does for the API.
Its errors name a path (``[2].tiers[1].up_to``, ``prices[0].unit_price``); ``attach_error``
puts each message next to the field of the row that path names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from django import forms
from django.forms import BaseFormSet, formset_factory

from billing.models import Cadence, PricePlan
from billing.rating.config import COMPONENT_TYPES, Cap, Discount, PriceOverride
from billing.terms_tables import TYPE_LABELS
from core.fields import MONEY, RATE, DecimalOptions
from core.form_input import FormInputError, check_amount, check_int
from core.models import Currency, Customer

__all__ = [
    "AmendmentForm",
    "CapForm",
    "ComponentForm",
    "ContractForm",
    "DiscountForm",
    "PlanForm",
    "PriceOverrideForm",
    "Row",
    "RowList",
    "TierForm",
    "UsageForm",
    "VersionForm",
]


def _plain_number(column: DecimalOptions) -> Any:
    """A validator: a plain decimal of ASCII digits that fits `column` (core.form_input), so
    NaN, Infinity, 1e30, 5,000 digits or Arabic-Indic digits are refused next to the field."""

    def validate(value: Any) -> None:
        raw = str(value).strip().replace(",", "")
        try:
            Decimal(raw)
        except InvalidOperation:
            return  # not a number at all: the rating config says so, in its words
        if raw:
            try:
                check_amount("", raw, label="The number", column=column)
            except FormInputError as exc:
                raise forms.ValidationError(exc.message, code="invalid") from None

    return validate


def _dec(label: str, help_text: str = "") -> forms.CharField:
    """A decimal typed as text: the rating config parses it (and says what is wrong with it)
    once it is a plain number (`_plain_number`)."""
    return forms.CharField(
        label=label,
        required=False,
        max_length=40,
        help_text=help_text,
        validators=[_plain_number(RATE)],
        widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 10}),
    )


class PlainDecimalField(forms.DecimalField):
    """A DecimalField that takes only a plain number of ASCII digits (Django's reads
    Arabic-Indic digits and exponents)."""

    def __init__(self, *, column: DecimalOptions = MONEY, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", column["max_digits"])
        kwargs.setdefault("decimal_places", column["decimal_places"])
        super().__init__(**kwargs)
        self.validators.insert(0, _plain_number(column))

    def to_python(self, value: Any) -> Any:
        if value not in self.empty_values:
            _plain_number({"max_digits": 80, "decimal_places": 40})(value)
        return super().to_python(value)


class PlainIntegerField(forms.IntegerField):
    """An IntegerField of ASCII digits only (Django's reads `int("١")` as 1)."""

    def to_python(self, value: Any) -> Any:
        raw = str(value).strip() if value not in self.empty_values else ""
        if raw:
            try:
                check_int("", raw, low=-(2**63) + 1)
            except FormInputError:
                raise forms.ValidationError(
                    self.error_messages["invalid"], code="invalid"
                ) from None
        return super().to_python(value)


def _text(label: str, help_text: str = "", size: int = 14) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=200,
        help_text=help_text,
        widget=forms.TextInput(attrs={"size": size}),
    )


# --------------------------------------------------------------------------- rows


class TierForm(forms.Form):
    up_to = _dec("Up to (units)", "Inclusive; blank on the last tier: no limit.")
    unit_price = _dec("Unit price")
    flat_fee = _dec("Flat fee", "Charged once when any unit falls in the tier.")


#: Component types priced by tiers: their rows show a tier table.
TIERED = ("graduated", "volume")


class ComponentForm(forms.Form):
    """One price component. Field names are the JSON's; ``tax_code`` and ``amount_property``
    go to the version's component_meta."""

    type = forms.ChoiceField(
        label="Type",
        required=False,
        choices=[("", "— choose —"), *((t, TYPE_LABELS.get(t, t)) for t in COMPONENT_TYPES)],
    )
    code = _text("Code", "Unique in the plan, e.g. api.", size=10)
    description = _text("Description", "Shown on the invoice line.", size=24)
    metric = _text("Metric", "Metric code, for usage components.", size=12)
    free_units = _dec("Included units")
    unit_price = _dec("Unit price")
    package_size = _dec("Package size")
    package_price = _dec("Package price")
    rate = _dec("Rate", "A fraction: 0.029 = 2.9 %.")
    fixed_fee = _dec("Fee per event")
    min_fee = _dec("Minimum fee")
    max_fee = _dec("Maximum fee")
    amount = _dec("Amount")
    prorate = forms.ChoiceField(
        label="Prorate",
        required=False,
        choices=[("", "by day (default)"), ("true", "by day"), ("false", "bill whole")],
    )
    metrics = _text("Counts metrics", "Comma-separated; blank: all usage.", size=16)
    tax_code = _text("Tax code", "Blank: the plan's default.", size=8)
    amount_property = _text("Amount property", "Event property with the amount.", size=10)

    META = ("tax_code", "amount_property")

    @staticmethod
    def fields_for(kind: str) -> tuple[str, ...]:
        """The fields a component of ``kind`` has (the msgspec Struct's), ``type`` first."""
        cls = COMPONENT_TYPES.get(kind)
        if cls is None:
            return tuple(ComponentForm.base_fields)
        names = {f.name for f in msgspec.structs.fields(cls)}
        meta = ComponentForm.META if kind != "fixed_fee" else ("tax_code",)
        return tuple(n for n in ComponentForm.base_fields if n in names or n == "type") + meta


class PriceOverrideForm(forms.Form):
    """A negotiated price for one plan component: fill the one field that fits its type."""

    component = _text("Component", "The plan component's code.", size=10)
    unit_price = _dec("Unit price", "per unit; or every tier's unit price")
    package_price = _dec("Package price")
    rate = _dec("Rate", "percentage components")
    amount = _dec("Amount", "fixed fees, minimum commitments")


class DiscountForm(forms.Form):
    component = _text("Component", "Blank: the whole invoice.", size=10)
    percent_off = _dec("Percent off", "10 = 10 %")
    amount_off = _dec("Amount off", "per period")
    description = _text("Description", size=20)


class CapForm(forms.Form):
    component = _text("Component", size=10)
    max_amount = _dec("Maximum per period")


# JSON form of one row: which fields are numbers-as-text (all but these) and which are lists.
_LIST_FIELDS = {"metrics"}
_BOOL_FIELDS = {"prorate"}


@dataclass
class Row:
    """A row as typed (strings), its tiers, and the bound forms it is shown with."""

    values: dict[str, str]
    tiers: list[dict[str, str]] = field(default_factory=list)
    form: forms.Form | None = None
    tier_forms: BaseFormSet[Any] | None = None

    def is_blank(self) -> bool:
        return not any(self.values.values()) and not any(any(t.values()) for t in self.tiers)

    @property
    def kind(self) -> str:
        return self.values.get("type", "")

    @property
    def shown_fields(self) -> list[forms.BoundField]:
        """The fields this row's type has, plus any other that holds a value (never hidden)."""
        assert self.form is not None
        wanted = ComponentForm.fields_for(self.kind) if "type" in self.values else ()
        return [
            self.form[name]
            for name in self.form.fields
            if not wanted or name in wanted or self.values.get(name) or self.form[name].errors
        ]

    @property
    def has_tiers(self) -> bool:
        return self.kind in TIERED or bool(self.tiers) or "type" not in self.values


class RowList:
    """One formset's rows (``prefix``), each with an optional tier formset, in ORDER order."""

    def __init__(self, form_class: type[forms.Form], prefix: str, *, tiers: bool) -> None:
        self.form_class = form_class
        self.prefix = prefix
        self.tiered = tiers
        self.formset_class = formset_factory(form_class, extra=0, can_order=True, can_delete=True)
        self.tier_formset_class = formset_factory(
            TierForm, extra=0, can_order=True, can_delete=True
        )
        self.rows: list[Row] = []
        self.errors: list[str] = []  # about the list as a whole (shown above it)
        self.formset: BaseFormSet[Any] | None = None

    # reading what was posted -----------------------------------------------------------

    def read(self, data: Any) -> RowList:
        """The rows posted, in their ORDER, without those marked DELETE (a missing list: none)."""
        fs = self.formset_class(data, prefix=self.prefix)
        self.rows = []
        fs.is_valid()  # a refused number stays in its row (`_typed`); bind() shows its error
        forms_in_order = [f for f in fs.forms if not getattr(f, "cleaned_data", {}).get("DELETE")]
        if any("ORDER" in f.errors for f in forms_in_order):
            # a position that is not a number: keep the rows as they came, lose nothing
            self.errors.append("A row's position is not a whole number; rows kept as they came.")
        else:  # the formset's own order: by position, rows without one last
            forms_in_order.sort(
                key=lambda f: (
                    f.cleaned_data.get("ORDER") is None,
                    f.cleaned_data.get("ORDER") or 0,
                )
            )
        for form in forms_in_order:
            index = fs.forms.index(form)
            row = Row(values=_typed(form))
            if self.tiered:
                tfs = self.tier_formset_class(data, prefix=f"{self.prefix}-{index}-tiers")
                if tfs.is_valid():
                    row.tiers = [_strings(t.cleaned_data) for t in tfs.ordered_forms]
                else:  # a refused number: keep the tiers as typed, bind() shows the error
                    row.tiers = [_typed(t) for t in tfs.forms if not t.cleaned_data.get("DELETE")]
            self.rows.append(row)
        return self

    def load(self, rows: list[Row]) -> RowList:
        self.rows = rows
        return self

    # edits that need no validation ------------------------------------------------------

    def add(self) -> None:
        self.rows.append(Row(values={}))

    def add_tier(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            self.rows[index].tiers.append({})

    # showing --------------------------------------------------------------------------

    def bind(self) -> RowList:
        """Bound formsets over the rows as they now are (positions 1..n), ready for errors."""
        data = _management(self.prefix, len(self.rows))
        for i, row in enumerate(self.rows):
            for name, value in row.values.items():
                data[f"{self.prefix}-{i}-{name}"] = value
            data[f"{self.prefix}-{i}-ORDER"] = str(i + 1)
            if self.tiered:
                tp = f"{self.prefix}-{i}-tiers"
                data.update(_management(tp, len(row.tiers)))
                for j, tier in enumerate(row.tiers):
                    for name, value in tier.items():
                        data[f"{tp}-{j}-{name}"] = value
                    data[f"{tp}-{j}-ORDER"] = str(j + 1)
        self.formset = self.formset_class(data, prefix=self.prefix)
        self.formset.is_valid()
        for i, row in enumerate(self.rows):
            row.form = self.formset.forms[i]
            if self.tiered:
                row.tier_forms = self.tier_formset_class(data, prefix=f"{self.prefix}-{i}-tiers")
                row.tier_forms.is_valid()
        return self

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(
            (r.form is not None and r.form.errors)
            or (r.tier_forms is not None and any(f.errors for f in r.tier_forms))
            for r in self.rows
        )

    # to the services' JSON and back ---------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        """The non-blank rows as the services take them; ``self.sent`` maps JSON index -> row."""
        out: list[dict[str, Any]] = []
        self.sent: list[tuple[int, list[int]]] = []
        for i, row in enumerate(self.rows):
            if row.is_blank():
                continue
            item: dict[str, Any] = {}
            for name, value in row.values.items():
                if value == "" or name in ComponentForm.META:
                    continue
                if name in _LIST_FIELDS:
                    item[name] = [m.strip() for m in value.split(",") if m.strip()]
                elif name in _BOOL_FIELDS:
                    item[name] = value == "true"
                else:
                    item[name] = value
            tier_rows = [j for j, t in enumerate(row.tiers) if any(t.values())]
            if self.tiered and (tier_rows or row.kind in TIERED):
                item["tiers"] = [_tier_json(row.tiers[j]) for j in tier_rows]
            out.append(item)
            self.sent.append((i, tier_rows))
        return out

    def meta_json(self) -> dict[str, Any]:
        """component_meta of the rows: {code: {"tax_code": ..., "amount_property": ...}}."""
        meta: dict[str, Any] = {}
        for row in self.rows:
            entry = {k: row.values[k] for k in ComponentForm.META if row.values.get(k)}
            if entry and row.values.get("code"):
                meta[row.values["code"]] = entry
        return meta

    def attach(self, index: int | None, tier: int | None, name: str, message: str) -> bool:
        """Put ``message`` next to field ``name`` of JSON item ``index`` (tier ``tier``)."""
        if index is None or not 0 <= index < len(self.sent):
            return False
        row_index, tier_rows = self.sent[index]
        row = self.rows[row_index]
        target: forms.Form | None
        if tier is not None and row.tier_forms is not None and 0 <= tier < len(tier_rows):
            target = row.tier_forms.forms[tier_rows[tier]]
        else:
            target = row.form
            if name == "tiers" and row.tier_forms is not None:
                name = ""
        assert target is not None
        target.add_error(name if name in target.fields else None, message)
        return True

    def attach_to_component(self, code: str, message: str) -> bool:
        for index, (row_index, _) in enumerate(self.sent):
            if self.rows[row_index].values.get("component") == code:
                return self.attach(index, None, "component", message)
        return False


def _strings(cleaned: dict[str, Any]) -> dict[str, str]:
    return {
        k: ("" if v is None else str(v)).strip()
        for k, v in cleaned.items()
        if k not in ("ORDER", "DELETE")
    }


def _typed(form: forms.Form) -> dict[str, str]:
    """A row's values: cleaned where valid, as typed where a field was refused (so the
    re-bound row shows the value and its error)."""
    values = _strings(form.cleaned_data)
    for name in form.errors:
        if name in form.fields and name not in ("ORDER", "DELETE"):
            values[name] = str(form[name].value() or "").strip()
    return values


def _management(prefix: str, count: int) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(count),
        f"{prefix}-INITIAL_FORMS": str(count),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def _tier_json(t: dict[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"up_to": t.get("up_to") or None}
    for name in ("unit_price", "flat_fee"):
        if t.get(name):
            item[name] = t[name]
    return item


# --------------------------------------------------------------------------- from stored JSON


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def rows_from_json(items: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> list[Row]:
    """Rows showing stored components or price overrides (a new version starts from them)."""
    rows = []
    for item in items:
        values = {k: _text_of(v) for k, v in item.items() if k != "tiers"}
        for k, v in ((meta or {}).get(item.get("code", "")) or {}).items():
            values[k] = _text_of(v)
        tiers = [{k: _text_of(v) for k, v in t.items()} for t in item.get("tiers") or []]
        rows.append(Row(values=values, tiers=tiers))
    return rows


# --------------------------------------------------------------------------- errors to fields

_PATH = re.compile(
    r"^(?P<list>[a-z_]*)\[(?P<i>\d+)\](?:\.tiers\[(?P<j>\d+)\])?(?:\.(?P<field>[a-z_]+))?"
)
_BY_CODE = re.compile(r"^(?:overrides\.)?(?P<list>prices|discounts|caps)\[(?P<code>[^\]]*)\]$")


def attach_error(lists: dict[str, RowList], path: str, message: str) -> bool:
    """Show a rating-config error next to the field its ``path`` names (False: no such row).

    ``lists`` maps the JSON list name ("" for a plan's components; "prices", "discounts",
    "caps" for overrides) to its rows.
    """
    if match := _PATH.match(path):
        rows = lists.get(match["list"])
        if rows is not None:
            j = match["j"]
            return rows.attach(
                int(match["i"]), None if j is None else int(j), match["field"] or "", message
            )
    if match := _BY_CODE.match(path):
        rows = lists.get(match["list"])
        if rows is not None and rows.attach_to_component(match["code"], message):
            return True
    name = path.removeprefix("overrides.").split("[")[0].split(".")[0]
    if name in lists:
        lists[name].errors.append(message)
        return True
    return False


# --------------------------------------------------------------------------- the other fields


class PlanForm(forms.Form):
    code = forms.SlugField(max_length=64, help_text="Unique, e.g. storage-2027.")
    name = forms.CharField(max_length=200)
    currency = forms.ModelChoiceField(queryset=Currency.objects.order_by("code"))
    default_tax_code = forms.CharField(max_length=32, initial="standard")


class VersionForm(forms.Form):
    effective_from = forms.DateField(
        help_text="The first day these prices apply (YYYY-MM-DD).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    note = forms.CharField(max_length=200, required=False)


class UsageForm(forms.Form):
    """A usage figure to price in the preview (not stored)."""

    metric = forms.CharField(max_length=64, required=False, widget=forms.TextInput({"size": 12}))
    quantity = PlainDecimalField(column=RATE, required=False, min_value=0, label="Quantity")
    event_amounts = forms.CharField(
        required=False,
        label="Event amounts",
        help_text="Percentage components: one amount per event, comma-separated.",
        max_length=20_000,
    )

    def clean_event_amounts(self) -> str:
        raw: str = self.cleaned_data.get("event_amounts") or ""
        for amount in raw.split(","):
            if amount.strip():
                _plain_number(MONEY)(amount)
        return raw


class ContractForm(forms.Form):
    code = forms.SlugField(max_length=64)
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.select_related("legal_entity").order_by(
            "legal_entity__code", "code"
        )
    )
    plan = forms.ModelChoiceField(queryset=PricePlan.objects.order_by("code"))
    start_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Exclusive; blank: open-ended.",
    )
    cadence = forms.ChoiceField(choices=Cadence.choices, initial=Cadence.MONTHLY)
    anchor_day = PlainIntegerField(min_value=1, max_value=28, initial=1)
    anchor_month = PlainIntegerField(min_value=1, max_value=12, initial=1)
    prepaid_balance = PlainDecimalField(min_value=0, initial=0)


class AmendmentForm(forms.Form):
    effective_from = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    plan = forms.ModelChoiceField(
        queryset=PricePlan.objects.order_by("code"),
        required=False,
        help_text="Blank: the plan stays as it is.",
    )
    change_overrides = forms.BooleanField(
        required=False,
        label="Replace the overrides with those below",
        help_text="Unticked: the overrides in force stay as they are.",
    )
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


# The override Structs' fields are the forms' fields (a test holds them equal).
OVERRIDE_FORMS: dict[str, tuple[type[forms.Form], type[msgspec.Struct], bool]] = {
    "prices": (PriceOverrideForm, PriceOverride, True),
    "discounts": (DiscountForm, Discount, False),
    "caps": (CapForm, Cap, False),
}


def override_lists() -> dict[str, RowList]:
    return {
        name: RowList(form, name, tiers=tiered)
        for name, (form, _struct, tiered) in OVERRIDE_FORMS.items()
    }


def overrides_json(lists: dict[str, RowList]) -> dict[str, Any]:
    """``{"prices": [...], "discounts": [...], "caps": [...]}`` without the empty lists."""
    out = {name: rows.to_json() for name, rows in lists.items()}
    return {name: items for name, items in out.items() if items}
