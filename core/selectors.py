from __future__ import annotations

from django.db.models import QuerySet

from core.models import Customer, LegalEntity


def legal_entities() -> QuerySet[LegalEntity]:
    return LegalEntity.objects.select_related("base_currency").order_by("code")


def customers() -> QuerySet[Customer]:
    return Customer.objects.select_related("legal_entity").order_by("legal_entity__code", "code")
