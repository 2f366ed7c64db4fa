"""Reading an API view's query parameters: a refused value is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.error_codes import CoreErrorCode
from core.errors import AppError


def choice_param(query: Mapping[str, str], name: str, allowed: Iterable[str]) -> str:
    """The value of enum filter `name` ("" when absent), or a 400 `invalid_parameter` naming the
    allowed values: an unknown status is an error, not an empty list."""
    value = query.get(name) or ""
    choices = list(allowed)
    if value and value not in choices:
        raise AppError(
            f"{name} must be one of {', '.join(choices)}; got {value[:60]!r}.",
            code=CoreErrorCode.INVALID_PARAMETER,
            status=400,
            extra={"field": name, "allowed": choices},
        )
    return value
