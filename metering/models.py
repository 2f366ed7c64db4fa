"""Models of metering: metric definitions (versioned), usage events, the dedupe
key table, held and rejected events, identity mapping, control totals and the
usage summaries billing rates from. See docs/metering.md for the reasons.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from metering.ingest import event_key

QUANTITY_DIGITS = 30
QUANTITY_PLACES = 6


class Aggregation(models.TextChoices):
    COUNT = "count", "Count of events"
    SUM = "sum", "Sum of the value"
    MAX = "max", "Maximum value"
    UNIQUE_COUNT = "unique_count", "Count of distinct values of a property"
    LATEST = "latest", "Value of the latest event"


class MetricDefinition(models.Model):
    """The version-agnostic metric: its `code` is what price plans refer to.

    What the metric means (name, unit, aggregation, value property, JSON schema)
    lives in MetricVersion rows, effective-dated: an event is validated against
    the version in force at its timestamp.
    """

    code = models.SlugField(
        max_length=100, unique=True, help_text="Referenced by price plans, e.g. api_calls."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class MetricVersion(models.Model):
    metric = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    effective_from = models.DateTimeField(
        help_text="Events at or after this time use this version."
    )
    name = models.CharField(max_length=200)
    unit = models.CharField(max_length=50, blank=True)
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    value_property = models.CharField(
        max_length=100,
        blank=True,
        help_text="Property holding the value (sum/max/latest) or the distinct key (unique_count).",
    )
    properties_schema = models.JSONField(
        default=dict, blank=True, help_text="JSON Schema for `properties`."
    )
    accepts_negative = models.BooleanField(
        default=False,
        help_text="Whether events may carry a negative value (refunds, credits); "
        "if not, intake rejects them with `negative_value`.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["metric__code", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["metric", "version"], name="metric_version_unique"),
            models.UniqueConstraint(
                fields=["metric", "effective_from"], name="metric_version_effective_unique"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="metric_version_positive"),
            models.CheckConstraint(
                condition=Q(aggregation="count") | ~Q(value_property=""),
                name="metric_version_value_property_needed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.metric.code} v{self.version}"


class UsageEvent(models.Model):
    """An accepted usage event. Append-only (trigger on PostgreSQL).

    On PostgreSQL the table is partitioned by month of `timestamp` (migration
    0001 creates it with SQL); uniqueness of (source, event_id) is held by
    EventKey because a unique constraint on a partitioned table would have to
    include the partition key. `seq` comes from one sequence: the global order
    usage summaries use as their watermark.
    """

    seq = models.BigAutoField(primary_key=True)
    source = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200)
    customer_ref = models.CharField(max_length=200)
    customer = models.ForeignKey(
        "core.Customer", on_delete=models.PROTECT, related_name="+", db_constraint=True
    )
    metric = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="+")
    metric_version = models.ForeignKey(MetricVersion, on_delete=models.PROTECT, related_name="+")
    timestamp = models.DateTimeField()
    value = models.DecimalField(
        max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, null=True, blank=True
    )
    properties = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    api_key = models.ForeignKey(
        "core.ApiKey",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )
    held_event = models.BigIntegerField(
        null=True, blank=True, help_text="HeldEvent id when released from hold."
    )

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(fields=["metric", "timestamp", "customer"], name="usageevent_window_idx")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.source}:{self.event_id}"


class EventKey(models.Model):
    """The key of every accepted or held event: the exactly-once guard.

    `key` is source + TAB + event_id (validation refuses control characters in
    both, so the TAB is unambiguous and the key sorts like (source, event_id)).
    One text column rather than a (source, event_id) pair: the unique index a
    batch inserts ~1,000 keys into compares one string per step, and a batch's
    keys are looked up with one `key = ANY(...)` condition (metering.event_store).

    `content_hash` tells a harmless redelivery from a conflicting one.
    """

    key = models.CharField(max_length=301, primary_key=True)
    content_hash = models.CharField(max_length=32)
    received_at = models.DateTimeField()

    key_of = staticmethod(event_key)

    @property
    def source(self) -> str:
        return self.key.split("\t", 1)[0]

    @property
    def event_id(self) -> str:
        return self.key.split("\t", 1)[1]

    def __str__(self) -> str:
        return f"{self.source}:{self.event_id}"


class HeldEvent(models.Model):
    """A valid event whose (source, customer_ref) has no customer mapping yet.

    Releasing (when the mapping is added) inserts it into UsageEvent with a new
    seq and stamps `released_at`/`released_seq` here; nothing is dropped.
    """

    source = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200)
    customer_ref = models.CharField(max_length=200)
    metric = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="+")
    metric_version = models.ForeignKey(MetricVersion, on_delete=models.PROTECT, related_name="+")
    timestamp = models.DateTimeField()
    value = models.DecimalField(
        max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, null=True, blank=True
    )
    properties = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)
    released_seq = models.BigIntegerField(null=True, blank=True)
    customer = models.ForeignKey(
        "core.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["source", "customer_ref"],
                name="heldevent_ref_idx",
                condition=Q(released_at__isnull=True),
            )
        ]
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="heldevent_key_unique"),
            models.CheckConstraint(
                condition=Q(
                    released_at__isnull=True, released_seq__isnull=True, customer__isnull=True
                )
                | Q(released_at__isnull=False, released_seq__isnull=False, customer__isnull=False),
                name="heldevent_release_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"held {self.source}:{self.event_id}"


class RejectedStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESUBMITTED = "resubmitted", "Corrected and re-submitted"


class RejectedEvent(models.Model):
    """The dead letter: a refused event with its raw payload, reason and key."""

    received_at = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=100, blank=True)
    event_id = models.CharField(max_length=200, blank=True)
    code = models.CharField(max_length=64, db_index=True)
    message = models.TextField()
    raw = models.JSONField(null=True, blank=True, help_text="The event as received (JSON).")
    raw_text = models.TextField(blank=True, help_text="The body as received when it was not JSON.")
    status = models.CharField(
        max_length=16, choices=RejectedStatus.choices, default=RejectedStatus.OPEN
    )
    resubmitted_at = models.DateTimeField(null=True, blank=True)
    resubmission_outcome = models.CharField(max_length=16, blank=True)
    case = models.ForeignKey(
        "exceptions.ExceptionCase",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"rejected {self.source}:{self.event_id} ({self.code})"


class DuplicateConflict(models.Model):
    """A redelivered (source, event_id) whose content differs from the original.

    The original stands; the conflicting payload is kept for finance to decide.
    """

    source = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField()
    api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    raw = models.JSONField()
    case = models.ForeignKey(
        "exceptions.ExceptionCase",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        ordering = ["-id"]


class EventSupersession(models.Model):
    """Finance took the new version of a conflicting redelivery: the accepted event `original_seq`
    is superseded by the accepted event `replacement_seq` (the conflict's payload, stored as a new
    event). Append-only (trigger on PostgreSQL): events are never edited, and a supersession is
    never undone (taking yet another version supersedes the replacement in turn).

    A usage summary with watermark W counts the events with seq <= W less the originals whose
    replacement_seq <= W: a summary computed before the supersession keeps its lineage, one
    computed after it counts the replacement instead (decision 51).
    """

    source = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200)
    original_seq = models.BigIntegerField(unique=True)
    replacement_seq = models.BigIntegerField(unique=True)
    replacement_hash = models.CharField(
        max_length=32, help_text="content_hash of the replacement: its redelivery is a duplicate."
    )
    conflict = models.OneToOneField(
        DuplicateConflict, on_delete=models.PROTECT, related_name="supersession"
    )
    case = models.ForeignKey(
        "exceptions.ExceptionCase",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reason = models.TextField()
    actor_label = models.CharField(max_length=200)
    superseded_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["source", "event_id"], name="supersession_key_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(replacement_seq__gt=models.F("original_seq")),
                name="supersession_replacement_later",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.event_id} #{self.original_seq} -> #{self.replacement_seq}"


class CustomerMapping(models.Model):
    """(source, customer_ref) → customer: how a product's account id becomes our customer."""

    source = models.CharField(max_length=100)
    customer_ref = models.CharField(max_length=200)
    customer = models.ForeignKey(
        "core.Customer", on_delete=models.PROTECT, related_name="usage_mappings"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "customer_ref"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "customer_ref"], name="customer_mapping_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.customer_ref} → {self.customer_id}"


class IngestTally(models.Model):
    """Control totals per source and day of receipt: received = accepted + duplicate + rejected + held."""

    source = models.CharField(max_length=100)
    day = models.DateField()
    accepted = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    released = models.BigIntegerField(
        default=0, help_text="Held events of this day released since."
    )

    class Meta:
        ordering = ["-day", "source"]
        constraints = [
            models.UniqueConstraint(fields=["source", "day"], name="ingest_tally_unique")
        ]

    @property
    def received(self) -> int:
        return self.accepted + self.duplicate + self.rejected + self.held


class UsageSummary(models.Model):
    """Usage of one customer and metric in one window [period_start, period_end).

    The events it covers: accepted events of that customer, metric and window
    with seq <= watermark_seq. A later revision is a full recomputation of the
    same window (late usage); a closed summary is never changed again.
    """

    customer = models.ForeignKey(
        "core.Customer", on_delete=models.PROTECT, related_name="usage_summaries"
    )
    metric = models.ForeignKey(MetricDefinition, on_delete=models.PROTECT, related_name="summaries")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    revision = models.PositiveIntegerField(default=0)
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    quantity = models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES)
    event_count = models.BigIntegerField(default=0)
    watermark_seq = models.BigIntegerField(default=0)
    computed_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["period_start", "customer_id", "metric_id", "revision"]
        verbose_name_plural = "usage summaries"
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "metric", "period_start", "period_end", "revision"],
                name="usage_summary_unique",
            ),
            models.UniqueConstraint(
                fields=["customer", "metric", "period_start", "period_end"],
                condition=Q(closed_at__isnull=True),
                name="usage_summary_one_open",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=models.F("period_start")),
                name="usage_summary_period_order",
            ),
            models.CheckConstraint(
                condition=Q(event_count__gte=0), name="usage_summary_count_nonneg"
            ),
        ]
        indexes = [
            models.Index(fields=["period_start", "period_end"], name="usage_summary_window_idx")
        ]

    def __str__(self) -> str:
        return f"{self.metric_id}/{self.customer_id} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d} r{self.revision}"

    @property
    def is_closed(self) -> bool:
        return self.closed_at is not None


class ImportJob(models.Model):
    """A CSV upload being ingested by a task, with progress and a per-row error report."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    file = models.FileField(upload_to="metering/imports/")
    filename = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total_bytes = models.BigIntegerField(default=0)
    processed_bytes = models.BigIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    accepted = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    error_report = models.FileField(upload_to="metering/import_errors/", blank=True)
    message = models.TextField(blank=True)
    encoding = models.CharField(max_length=20, default="utf-8")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def percent(self) -> int:
        if not self.total_bytes:
            return 0 if self.status != self.Status.DONE else 100
        return min(100, int(self.processed_bytes * 100 / self.total_bytes))
