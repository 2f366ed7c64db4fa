"""The API lists' filters: django-filter, with one answer for a refused value.

Every list's query parameters are a FilterSet (declared `filterset_fields`, or a
`filterset_class`); `FilterBackend`, the default filter backend, answers a refused value with
400 `invalid_parameter` naming the parameter, and for an enum filter the allowed values
(`extra.allowed`): an unknown `status` is an error, not an empty list (issue 12, item 3).

A list whose query is an app's selector (the page uses the same one) declares a
`SelectorFilterSet`: django-filter validates the parameters (and documents them in the
schema), the selector applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import django_filters as df  # type: ignore[import-untyped]
from django import forms
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend  # type: ignore[import-untyped]
from rest_framework.request import Request

from core.error_codes import CoreErrorCode
from core.errors import AppError
from core.form_input import BIGINT_MAX

__all__ = [
    "FilterBackend",
    "IdFilter",
    "SelectorFilterSet",
    "UtcDateTimeFilter",
    "invalid_choice",
    "refused_filter",
]


def invalid_choice(name: str, value: str, allowed: list[str]) -> AppError:
    """The 400 of an enum parameter given a value it does not have."""
    return AppError(
        f"{name} must be one of {', '.join(allowed)}; got {value[:60]!r}.",
        code=CoreErrorCode.INVALID_PARAMETER,
        status=400,
        extra={"field": name, "allowed": allowed},
    )


def refused_filter(form: forms.Form) -> AppError:
    """The 400 naming the first refused parameter of a filter form (its allowed values when it
    is an enum)."""
    name, errors = next(iter(form.errors.items()))
    field = form.fields.get(name)
    value = str(form.data.get(name, ""))
    if isinstance(field, forms.ChoiceField) and not isinstance(field, forms.ModelChoiceField):
        choices: list[tuple[Any, Any]] = list(field.choices)  # type: ignore[arg-type]
        allowed = [str(v) for v, _label in choices if v not in ("", None)]
        return invalid_choice(name, value, allowed)
    return AppError(
        f"The parameter {name!r} is invalid: {' '.join(str(e) for e in errors)}",
        code=CoreErrorCode.INVALID_PARAMETER,
        status=400,
        extra={"field": name, "fields": {k: [str(e) for e in v] for k, v in form.errors.items()}},
    )


class _IdField(forms.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(**kwargs)


class IdFilter(df.NumberFilter):  # type: ignore[misc]
    """A row id: a whole number from 1 to 2^63 - 1 (a decimal or a larger one is refused)."""

    field_class = _IdField


class _UtcDateTimeField(df.fields.IsoDateTimeField):  # type: ignore[misc]
    def clean(self, value: Any) -> datetime | None:
        moment = super().clean(value)
        if not isinstance(moment, datetime):
            return None
        try:  # PostgreSQL takes offsets up to 15:59 only: compare in UTC
            return moment.astimezone(UTC) if moment.tzinfo else moment
        except OverflowError:
            raise forms.ValidationError("Enter a date-time from year 1 to 9999.") from None


class UtcDateTimeFilter(df.IsoDateTimeFilter):  # type: ignore[misc]
    """An ISO 8601 date-time, compared in UTC (any offset Python reads, such as +22:10, that
    PostgreSQL's would refuse; one that leaves years 1-9999 is refused)."""

    field_class = _UtcDateTimeField


class FilterBackend(DjangoFilterBackend):  # type: ignore[misc]
    """DjangoFilterBackend whose refusal is `refused_filter` (our error body), not DRF's."""

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise refused_filter(filterset.form)
        return filterset.qs


class SelectorFilterSet(df.FilterSet):  # type: ignore[misc]
    """Filters validated here and applied by `select`, the app's selector: its keyword
    arguments are the filters' names (or `arguments[name]`); blank filters are left out."""

    arguments: ClassVar[dict[str, str]] = {}

    @staticmethod
    def select(**kwargs: Any) -> QuerySet[Any]:  # pragma: no cover - every subclass sets it
        raise NotImplementedError

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        given = {
            self.arguments.get(name, name): value
            for name, value in self.form.cleaned_data.items()
            if value not in (None, "")
        }
        return self.select(**given)


def selector(function: Callable[..., QuerySet[Any]]) -> Any:
    """`select = selector(app.selectors.f)` in a SelectorFilterSet."""
    return staticmethod(function)
