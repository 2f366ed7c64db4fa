from __future__ import annotations

from typing import TypedDict

from core.models import Customer, LegalEntity
from exceptions.selectors import open_cases


class DashboardSummary(TypedDict):
    legal_entities: int
    customers: int
    open_cases: int


def dashboard_summary() -> DashboardSummary:
    return {
        "legal_entities": LegalEntity.objects.count(),
        "customers": Customer.objects.count(),
        "open_cases": open_cases().count(),
    }


def legal_entities():  # type: ignore[no-untyped-def]
    return LegalEntity.objects.select_related("base_currency").order_by("code")


def customers():  # type: ignore[no-untyped-def]
    return Customer.objects.select_related("legal_entity").order_by("legal_entity__code", "code")
