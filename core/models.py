"""Master data every app shares (currencies, legal entities, customers) and API keys.

These live in the bottom layer so that metering (identity mapping) and billing
(contracts) can both refer to a customer without importing each other; see
docs/decisions.md.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Currency(models.Model):
    """An ISO 4217 currency and its minor unit (JPY 0, USD 2, KWD 3)."""

    code = models.CharField(max_length=3, primary_key=True)
    name = models.CharField(max_length=64)
    minor_units = models.PositiveSmallIntegerField()

    class Meta:
        verbose_name_plural = "currencies"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(minor_units__lte=4), name="currency_minor_units_0_4"
            ),
            models.CheckConstraint(
                condition=Q(code__regex=r"^[A-Z]{3}$"), name="currency_code_iso"
            ),
        ]

    def __str__(self) -> str:
        return self.code


class LegalEntity(models.Model):
    """A company of the group that issues invoices and keeps its own books."""

    code = models.SlugField(max_length=32, unique=True, help_text="Short code, e.g. LL-US.")
    name = models.CharField(max_length=200)
    base_currency = models.ForeignKey(Currency, on_delete=models.PROTECT, related_name="+")
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. US.")
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin."
    )
    address = models.TextField(
        blank=True, help_text="Postal address as printed on invoices, one line per line."
    )
    tax_id = models.CharField(
        max_length=32, blank=True, help_text="VAT/GST/EIN number printed on invoices."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "legal entities"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def clean(self) -> None:
        from zoneinfo import available_timezones

        from django.core.exceptions import ValidationError

        if self.timezone not in available_timezones():
            raise ValidationError({"timezone": f"Unknown time zone {self.timezone!r}."})


class Customer(models.Model):
    """A customer of one legal entity. External references live in `external_refs`."""

    legal_entity = models.ForeignKey(
        LegalEntity, on_delete=models.PROTECT, related_name="customers"
    )
    code = models.SlugField(
        max_length=64, help_text="Our customer number, unique per legal entity."
    )
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, blank=True)
    tax_exempt = models.BooleanField(default=False)
    tax_jurisdiction = models.CharField(max_length=32, blank=True, help_text="e.g. US-CA, DE.")
    email = models.EmailField(blank=True)
    address = models.TextField(
        blank=True, help_text="Billing address as printed on invoices, one line per line."
    )
    tax_id = models.CharField(
        max_length=32, blank=True, help_text="The customer's VAT/GST/EIN number, if any."
    )
    external_refs = models.JSONField(
        default=dict, blank=True, help_text='References in other systems, e.g. {"crm": "0011x00"}.'
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["legal_entity__code", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["legal_entity", "code"], name="customer_code_per_entity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class ApiScope(models.TextChoices):
    USAGE_WRITE = "usage:write", "Send usage events"
    POSTINGS_READ = "postings:read", "Read posting status"
    INVOICES_READ = "invoices:read", "Read invoices"
    EXCEPTIONS_READ = "exceptions:read", "Read exception cases"
    ADMIN = "admin", "Manage metrics, mappings, plans and contracts"


class ApiKey(models.Model):
    """A key for API clients. Only a SHA-256 hash of the secret is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}…, {state})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
