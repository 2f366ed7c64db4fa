"""API fields shared by the apps."""

from __future__ import annotations

from decimal import Decimal
from operator import attrgetter
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.formatting import money_plain


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "example": "1234.50",
        "description": "Decimal string with exactly the currency's minor units "
        "(USD 2: '12.30', JPY 0: '1230', KWD/BHD 3: '12.300').",
    }
)
class MoneyField(serializers.Field[tuple[Decimal, int], str, str, Any]):
    """A read-only amount as a decimal string in its currency's minor units.

    `currency` is the dotted path from the serialized object to its ``Currency``
    (``"currency"`` on an invoice, ``"invoice.currency"`` on a line).
    """

    def __init__(self, *, currency: str, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)
        self._currency = attrgetter(currency)

    def get_attribute(self, instance: Any) -> tuple[Decimal, int]:
        amount = super().get_attribute(instance)
        if not isinstance(amount, Decimal):  # money fields are non-null DecimalFields
            raise TypeError(f"{self.field_name} is not a Decimal: {amount!r}")
        return amount, self._currency(instance).minor_units

    def to_representation(self, value: tuple[Decimal, int]) -> str:
        amount, minor_units = value
        return money_plain(amount, minor_units=minor_units)
