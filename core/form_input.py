"""Reading the fields of a page's state-changing form: a hostile value is a 400 naming the field.

The invoice actions, the billing runs and the exception workbench take their few fields from
`request.POST` (no Django form); these helpers are the one place such a field is judged, before
any service runs, so a refused value changes nothing (issue 12, item 3):

* an id is ASCII digits up to 64 bits (`"²".isdigit()` is true and `int("²")` raises);
* an amount is a plain decimal of ASCII digits (no NaN, Infinity or exponent, no Arabic-Indic
  digits that `Decimal` would read) that fits a money column;
* a text has no NUL and fits its column;
* a date is YYYY-MM-DD.

A refusal is `FormInputError` (an `AppError`, status 400, code `invalid_input`, `extra.field`):
the API answers it as any AppError; on a page `FormInputErrorMiddleware` renders the 400 page
with the message and the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from core.error_codes import CoreErrorCode
from core.errors import AppError
from core.fields import MONEY, DecimalOptions

__all__ = [
    "BIGINT_MAX",
    "FormInputError",
    "check_amount",
    "check_id",
    "form_amount",
    "form_amounts_by_id",
    "form_date",
    "check_int",
    "form_id",
    "form_int",
    "form_ids",
    "form_text",
    "form_token",
]

#: The largest value a bigint column (every id) holds.
BIGINT_MAX = 2**63 - 1
#: The largest value an integer column (a count, a number of hours) holds.
INTEGER_MAX = 2**31 - 1
#: A text field's limit unless told: the longest reason or comment column.
TEXT_MAX = 2000
_AMOUNT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class FormInputError(AppError):
    """A form field refused before anything was changed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            message, code=CoreErrorCode.INVALID_INPUT, extra={"field": field}, status=400
        )
        self.field = field


def _raw(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    return "" if value is None else str(value).strip()


def form_text(
    data: Mapping[str, Any],
    name: str,
    *,
    label: str = "",
    max_length: int = TEXT_MAX,
    required: bool = False,
) -> str:
    """Field `name` as text (stripped): no NUL, at most `max_length` characters."""
    value = _raw(data, name)
    label = label or name
    if "\x00" in value:
        raise FormInputError(name, f"{label} contains a NUL character.")
    if len(value) > max_length:
        raise FormInputError(
            name, f"{label} is {len(value)} characters long; at most {max_length} are kept."
        )
    if required and not value:
        raise FormInputError(name, f"Type the {label}.")
    return value


def check_int(name: str, raw: str, *, label: str = "", low: int = 0, high: int = BIGINT_MAX) -> int:
    """`raw` as a whole number of ASCII digits from `low` to `high`."""
    label = label or name
    digits = raw.removeprefix("-") if low < 0 else raw
    if (
        not (digits.isascii() and digits.isdigit())
        or len(digits) > 19
        or not low <= int(raw) <= high
    ):
        raise FormInputError(name, f"{label} must be a whole number from {low} to {high}.")
    return int(raw)


def check_id(name: str, raw: str, *, label: str = "") -> int:
    """`raw` as a row id: ASCII digits, 1 to 2^63 - 1."""
    return check_int(name, raw, label=label, low=1)


def form_int(
    data: Mapping[str, Any],
    name: str,
    *,
    label: str = "",
    low: int = 0,
    high: int = INTEGER_MAX,
    required: bool = True,
) -> int | None:
    """Field `name` as a whole number from `low` to `high` (an integer column unless told);
    None when blank and not `required`."""
    raw = _raw(data, name)
    if not raw and not required:
        return None
    if not raw:
        raise FormInputError(name, f"Type the {label or name} (a whole number).")
    return check_int(name, raw, label=label, low=low, high=high)


def form_id(data: Mapping[str, Any], name: str, *, label: str = "", required: bool = True) -> int:
    """Field `name` as a row id (0 when it is blank and not `required`)."""
    raw = _raw(data, name)
    if not raw and not required:
        return 0
    return check_id(name, raw, label=label)


def form_ids(data: Any, name: str, *, label: str = "") -> list[int]:
    """Every value of a repeated field (`getlist`) as row ids, blanks skipped."""
    values = data.getlist(name) if hasattr(data, "getlist") else [data.get(name, "")]
    return [check_id(name, str(v).strip(), label=label) for v in values if str(v).strip()]


def check_amount(
    name: str, raw: str, *, label: str = "", column: DecimalOptions = MONEY
) -> Decimal:
    """`raw` as a finite decimal of ASCII digits that fits `column` (money unless told)."""
    label = label or name
    places, digits = column["decimal_places"], column["max_digits"]
    if len(raw) > digits + 3 or not raw.isascii() or not _AMOUNT.fullmatch(raw):
        raise FormInputError(
            name, f"{label} must be a plain number such as 12.50; got {raw[:40]!r}."
        )
    integer, _, fraction = raw.lstrip("+-").partition(".")
    whole = digits - places
    if len(integer.lstrip("0")) > whole:
        raise FormInputError(name, f"{label} is too large (under 10^{whole}).")
    if len(fraction.rstrip("0")) > places:
        raise FormInputError(name, f"{label} has more than {places} decimal places.")
    return Decimal(raw)


def form_amount(
    data: Mapping[str, Any],
    name: str,
    *,
    label: str = "",
    required: bool = True,
    column: DecimalOptions = MONEY,
) -> Decimal | None:
    """Field `name` as an amount (None when blank and not `required`)."""
    raw = _raw(data, name).replace(",", "")
    if not raw:
        if required:
            raise FormInputError(name, f"Type the {label or name}.")
        return None
    return check_amount(name, raw, label=label, column=column)


def form_amounts_by_id(
    data: Mapping[str, Any], prefix: str, *, label: str = ""
) -> dict[int, Decimal]:
    """The amounts typed in fields `<prefix><id>` (a credit memo's `line_<id>`), blanks
    skipped: {id: amount}. A bad id or amount names its field."""
    amounts: dict[int, Decimal] = {}
    for name in data:
        raw = _raw(data, name)
        if name.startswith(prefix) and raw:
            row = check_id(name, name[len(prefix) :], label=f"The id in {name}")
            amounts[row] = check_amount(name, raw.replace(",", ""), label=label)
    return amounts


#: The field of a state-changing form's one-time token (`{% one_time_token %}`).
TOKEN_FIELD = "idempotency_key"


def form_token(data: Mapping[str, Any]) -> str:
    """The form's one-time token, required: the service claims it, so a double submit (or a
    second tab's) is applied once and the second answer says so."""
    token = form_text(data, TOKEN_FIELD, label="The form's one-time token", max_length=100)
    if not token:
        raise FormInputError(
            TOKEN_FIELD,
            "This form carries no one-time token (an old page, or a hand-made request): reload "
            "the page and submit it again.",
        )
    return token


def form_date(
    data: Mapping[str, Any], name: str, *, label: str = "", required: bool = True
) -> date | None:
    """Field `name` as a date, YYYY-MM-DD (None when blank and not `required`)."""
    raw = _raw(data, name)
    label = label or name
    if not raw and not required:
        return None
    try:
        if len(raw) != 10 or not raw.isascii():
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise FormInputError(name, f"{label} must be a date, YYYY-MM-DD.") from None
