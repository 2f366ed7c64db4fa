"""The audit trail and the exception cases every app opens.

This is the core layer of `exceptions`: it imports no other Ledgerline app but
`core` (master data), so every app may write to it.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.actors import ActorKind


class AuditEntry(models.Model):
    """One state change. Append-only and hash-chained (see services.audit_record).

    `entry_hash` = SHA-256 over the canonical content of this entry including
    `prev_hash`, so altering or removing any entry breaks every link after it.
    """

    seq = models.BigIntegerField(unique=True, editable=False)
    at = models.DateTimeField(db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_label = models.CharField(max_length=200, help_text="Username, API key name or task name.")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=100, db_index=True, help_text="e.g. invoice.finalize")
    object_type = models.CharField(max_length=100, help_text="app_label.model")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    entry_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return (
            f"#{self.seq} {self.action} {self.object_type}:{self.object_id} by {self.actor_label}"
        )


class AuditChainHead(models.Model):
    """One row holding the chain's last seq and hash; locked to append in order."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="0" * 64)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="audit_chain_head_single_row")
        ]


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class CaseStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


OPEN_STATUSES = (CaseStatus.OPEN, CaseStatus.IN_PROGRESS)


class ExceptionCase(models.Model):
    """Something that failed and needs a person: one open case per failure fingerprint.

    The same failure seen again bumps `occurrence_count` on the open case
    instead of opening another (services.case_open_or_update).
    """

    kind = models.CharField(
        max_length=64, db_index=True, help_text="e.g. unmapped_customer, posting_failed"
    )
    fingerprint = models.CharField(
        max_length=255, help_text="Identifies the failure; one open case per fingerprint."
    )
    title = models.CharField(max_length=255)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MEDIUM)
    status = models.CharField(
        max_length=16, choices=CaseStatus.choices, default=CaseStatus.OPEN, db_index=True
    )
    source_type = models.CharField(
        max_length=100, blank=True, help_text="app_label.model of the failing record"
    )
    source_id = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(
        blank=True, help_text="The error in the failing system's words."
    )
    details = models.JSONField(default=dict, blank=True)
    occurrence_count = models.PositiveIntegerField(default=1)
    amount_at_stake = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    currency = models.ForeignKey(
        "core.Currency", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    legal_entity = models.ForeignKey(
        "core.LegalEntity",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exception_cases",
    )
    customer = models.ForeignKey(
        "core.Customer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exception_cases",
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=["open", "in_progress"]),
                name="one_open_case_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=Q(occurrence_count__gte=1), name="case_occurrences_positive"
            ),
            models.CheckConstraint(
                condition=Q(amount_at_stake__isnull=True) | Q(currency__isnull=False),
                name="case_amount_has_currency",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "in_progress"]) | Q(resolved_at__isnull=False),
                name="case_closed_has_resolved_at",
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def amount_display(self) -> str:
        if self.amount_at_stake is None or self.currency is None:
            return ""
        return f"{self.amount_at_stake.quantize(Decimal(1).scaleb(-self.currency.minor_units))} {self.currency_id}"
