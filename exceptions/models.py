"""The audit trail and the exception cases every app opens.

This is the core layer of `exceptions`: it imports no other Ledgerline app but
`core` (master data), so every app may write to it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

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
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


#: A case in any of these is still being worked: the same failure recurring counts on it.
OPEN_STATUSES = (CaseStatus.OPEN, CaseStatus.IN_PROGRESS, CaseStatus.AWAITING_APPROVAL)
_OPEN_LIST = [str(s) for s in OPEN_STATUSES]


class CaseKind(models.TextChoices):
    """Every kind of case the apps open (the kind column stays free text: a new source may add one)."""

    USAGE_REJECTED = "usage_rejected", "Rejected usage event"
    DUPLICATE_CONFLICT = "duplicate_conflict", "Duplicate conflict"
    UNMAPPED_CUSTOMER = "unmapped_customer", "Unmapped customer"
    BILLING_RATING_FAILED = "billing_rating_failed", "Rating error"
    BILLING_RUN_FAILED = "billing_run_failed", "Billing run failed"
    MISSING_GL_MAPPING = "missing_gl_mapping", "Missing GL mapping"
    POSTING_FAILED = "posting_failed", "Posting failed"
    POSTING_DEAD = "posting_dead", "Posting dead (retries exhausted)"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch", "Reconciliation mismatch"
    CUSTOMER_DISPUTE = "customer_dispute", "Customer dispute"
    CREDIT_REQUEST = "credit_request", "Credit memo request"


def _open_index(fields: list[str], name: str) -> models.Index:
    """A partial index over open cases only: the queue lists and sorts nothing else."""
    return models.Index(fields=fields, condition=Q(status__in=_OPEN_LIST), name=name)


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
    severity_rank = models.GeneratedField(
        expression=models.Case(
            models.When(severity="critical", then=models.Value(4)),
            models.When(severity="high", then=models.Value(3)),
            models.When(severity="medium", then=models.Value(2)),
            default=models.Value(1),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
        help_text="4 critical .. 1 low, so the queue sorts by severity on an index.",
    )
    status = models.CharField(
        max_length=20, choices=CaseStatus.choices, default=CaseStatus.OPEN, db_index=True
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
    connection_ref = models.CharField(
        max_length=100,
        blank=True,
        help_text="The ERP connection a posting case is about (its code).",
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assigned_cases",
    )
    due_at = models.DateTimeField(
        null=True, blank=True, help_text="first_seen_at + the kind's policy hours until due."
    )
    version = models.PositiveIntegerField(
        default=1, help_text="Bumped by every action: a form posted with an older one is refused."
    )
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)
    resolution_code = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [
            # The queue's default list: open cases, newest first, per kind / per assignee / by due.
            _open_index(["-last_seen_at", "-id"], "case_open_recent_idx"),
            _open_index(["kind", "-last_seen_at"], "case_open_kind_idx"),
            _open_index(["assignee", "-last_seen_at"], "case_open_assignee_idx"),
            _open_index(["legal_entity", "-last_seen_at"], "case_open_entity_idx"),
            _open_index(["customer", "-last_seen_at"], "case_open_customer_idx"),
            _open_index(["connection_ref", "-last_seen_at"], "case_open_connection_idx"),
            _open_index(["due_at", "id"], "case_open_due_idx"),
            _open_index(["-first_seen_at", "-id"], "case_open_opened_idx"),
            # case_open_amount_idx (amount DESC NULLS LAST, id DESC) is made in migration 0007
            # in SQL: SQLite's indexes take no NULLS LAST.
            _open_index(["-severity_rank", "-id"], "case_open_severity_idx"),
            # The counts per kind and status: an index-only scan instead of reading the table.
            models.Index(fields=["status", "kind"], name="case_status_kind_idx"),
            models.Index(fields=["severity", "status"], name="case_severity_status_idx"),
            models.Index(fields=["source_type", "source_id"], name="case_source_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=Q(status__in=_OPEN_LIST),
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
                condition=Q(status__in=_OPEN_LIST) | Q(resolved_at__isnull=False),
                name="case_closed_has_resolved_at",
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="case_version_positive"),
        ]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.title}"

    @property
    def kind_label(self) -> str:
        """The kind in words ("Posting failed"); a kind with no label is shown as its code."""
        return str(dict(CaseKind.choices).get(self.kind, self.kind))

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def amount_display(self) -> str:
        if self.amount_at_stake is None or self.currency is None:
            return ""
        return f"{self.amount_at_stake.quantize(Decimal(1).scaleb(-self.currency.minor_units))} {self.currency_id}"

    def is_past_due(self, now: datetime) -> bool:
        return self.is_open and self.due_at is not None and self.due_at < now


class ExceptionPolicy(models.Model):
    """How finance wants one kind of case handled; edited by an approver (audited).

    Severity: critical when the amount reaches `critical_amount` or the case is
    `critical_after_hours` old, high likewise, else the severity the source gave.
    """

    kind = models.CharField(max_length=64, unique=True)
    high_amount = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    critical_amount = models.DecimalField(max_digits=20, decimal_places=2, null=True, blank=True)
    high_after_hours = models.PositiveIntegerField(null=True, blank=True)
    critical_after_hours = models.PositiveIntegerField(null=True, blank=True)
    due_hours = models.PositiveIntegerField(default=72, help_text="Hours from opening to due.")
    auto_retry = models.BooleanField(
        default=False, help_text="Retry transient failures of this kind automatically."
    )
    retry_every_minutes = models.PositiveIntegerField(default=30)
    max_auto_retries = models.PositiveIntegerField(default=5)
    four_eyes_above = models.DecimalField(
        max_digits=20,
        decimal_places=2,
        default=Decimal("0"),
        help_text="A correction or reversal of a larger amount (or of an unknown one) needs a "
        "second person, an approver other than the proposer.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name_plural = "exception policies"
        ordering = ["kind"]
        constraints = [
            models.CheckConstraint(
                condition=Q(high_amount__isnull=True)
                | Q(critical_amount__isnull=True)
                | Q(critical_amount__gte=F("high_amount")),
                name="policy_critical_amount_above_high",
            ),
            models.CheckConstraint(
                condition=Q(four_eyes_above__gte=0), name="policy_four_eyes_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(retry_every_minutes__gte=1), name="policy_retry_interval_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"policy {self.kind}"


class ProposalKind(models.TextChoices):
    CORRECTION = "correction", "Correction"
    REVERSAL = "reversal", "Reversal"


class ProposalStatus(models.TextChoices):
    PENDING = "pending", "Awaiting approval"
    APPROVED = "approved", "Approved, being applied"
    APPLIED = "applied", "Approved and applied"
    FAILED = "failed", "Approved, applying failed"
    REJECTED = "rejected", "Rejected by the approver"
    WITHDRAWN = "withdrawn", "Withdrawn"


class CaseProposal(models.Model):
    """A correction or reversal proposed on a case: what it changes, and who agreed.

    Four eyes in the database: the approver is never the proposer.
    """

    case = models.ForeignKey(ExceptionCase, on_delete=models.PROTECT, related_name="proposals")
    kind = models.CharField(max_length=16, choices=ProposalKind.choices)
    target = models.CharField(
        max_length=64, help_text="What it changes: rejected_event, customer_mapping, invoice."
    )
    target_id = models.CharField(max_length=64, blank=True)
    original = models.JSONField(default=dict, blank=True)
    proposed = models.JSONField(default=dict)
    amount = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    reason_code = models.CharField(max_length=64)
    comment = models.TextField()
    status = models.CharField(
        max_length=16, choices=ProposalStatus.choices, default=ProposalStatus.PENDING
    )
    revision = models.PositiveIntegerField(default=1)
    proposed_by_label = models.CharField(max_length=200)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_by_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_at = models.DateTimeField()
    approved_by_label = models.CharField(max_length=200, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    four_eyes = models.BooleanField(
        default=True, help_text="False when the policy let the proposer apply it alone."
    )
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-proposed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(approved_by__isnull=True) | ~Q(approved_by=F("proposed_by")),
                name="proposal_approver_is_not_proposer",
            ),
            models.CheckConstraint(
                condition=Q(approved_by_key__isnull=True)
                | ~Q(approved_by_key=F("proposed_by_key")),
                name="proposal_approver_key_is_not_proposer",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "applied", "failed"])
                | Q(four_eyes=False)
                | Q(approved_at__isnull=False),
                name="proposal_applied_was_approved",
            ),
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(status="pending"),
                name="one_pending_proposal_per_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} on case {self.case_id}"


class CaseComment(models.Model):
    case = models.ForeignKey(ExceptionCase, on_delete=models.PROTECT, related_name="comments")
    author_label = models.CharField(max_length=200)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    body = models.TextField()
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"comment on case {self.case_id} by {self.author_label}"


class IdempotentRequest(models.Model):
    """An API action's answer, kept under its Idempotency-Key so a retry is applied once.

    `status_code` 0 means the first request is still running; it holds the key until
    `lease_expires_at`. A process that died mid-action leaves its lease to expire, and a
    retry after that takes the key over and runs the action (the case's `version` refuses it
    if the first one did commit)."""

    api_key = models.ForeignKey("core.ApiKey", on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While running: until when the key is held."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_per_api_key")
        ]

    def __str__(self) -> str:
        return f"idempotency {self.key}"


class CaseCount(models.Model):
    """How many cases there are per (kind, status), kept by database triggers on the case table
    (migration 0006), so the queue shows its counts without scanning 100,000 rows."""

    kind = models.CharField(max_length=64)
    status = models.CharField(max_length=20)
    n = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "status"], name="case_count_per_kind_status"),
            models.CheckConstraint(condition=Q(n__gte=0), name="case_count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.status}: {self.n}"
