"""Tables of erp_sync: ERP connections and mappings, the internal ledger, the posting outbox,
revenue schedules and reconciliation runs.

Workflows live in services/ (ledger writer, outbox drain, reconciliation); here are only
columns, constraints and small properties. Invariants that must hold even if a service is
bypassed are constraints here or PostgreSQL triggers in the migrations: journal entries balance
per currency (deferred constraint trigger), entries and lines are append-only, one posting per
connection and external id, one ledger entry per source key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q

from core.fields import MONEY  # money columns, as billing stores them

if TYPE_CHECKING:
    from erp_sync.connectors.base import DocumentKind


ZERO = Decimal(0)

env_var_name = RegexValidator(
    r"^[A-Z_][A-Z0-9_]*$",
    "The NAME of an environment variable (e.g. TRYTON_US_PASSWORD), never the secret itself.",
)


# --------------------------------------------------------------------------- connections


class ConnectionKind(models.TextChoices):
    TRYTON = "tryton", "Tryton (JSON-RPC)"
    MEMORY = "memory", "In memory (tests and dry runs)"


class PostingMode(models.TextChoices):
    DOCUMENTS = "documents", "Documents (invoices and credit notes; journals for the rest)"
    SUMMARIZED_JOURNALS = "summarized_journals", "Summarized journals (one per entity and day)"


class CreditMemoMode(models.TextChoices):
    CREDIT_NOTE = "credit_note", "Credit note against the original revenue accounts"
    CONTRA_REVENUE = "contra_revenue", "Credit note to the credit-memo (contra revenue) account"


class ErpConnection(models.Model):
    """Where one legal entity's books live in an ERP, and how hard to try posting there.

    The password is never stored: `password_env` names the environment variable holding it.
    """

    legal_entity = models.ForeignKey(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="erp_connections"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=ConnectionKind.choices)
    base_url = models.CharField(max_length=300, blank=True, help_text="e.g. http://127.0.0.1:8010")
    database = models.CharField(max_length=100, blank=True)
    company = models.CharField(max_length=200, blank=True, help_text="The ERP's company.")
    login = models.CharField(max_length=100, blank=True)
    password_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_var_name],
        help_text="Name of the environment variable holding the password.",
    )
    enabled = models.BooleanField(default=True)
    mode = models.CharField(
        max_length=32, choices=PostingMode.choices, default=PostingMode.DOCUMENTS
    )
    credit_memo_mode = models.CharField(
        max_length=32, choices=CreditMemoMode.choices, default=CreditMemoMode.CREDIT_NOTE
    )
    external_id_prefix = models.SlugField(
        max_length=16, default="ll", help_text="Our external ids in this ERP start with it."
    )
    max_attempts = models.PositiveSmallIntegerField(default=8)
    backoff_base_seconds = models.PositiveIntegerField(default=30)
    backoff_cap_seconds = models.PositiveIntegerField(default=3600)
    lease_seconds = models.PositiveIntegerField(
        default=300, help_text="A claimed posting not finished by then is taken again."
    )
    timeout_seconds = models.PositiveIntegerField(default=60)
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["legal_entity", "name"]
        constraints = [
            models.UniqueConstraint(fields=["legal_entity", "name"], name="erp_connection_name"),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="erp_connection_attempts_min"
            ),
            models.CheckConstraint(
                condition=Q(backoff_cap_seconds__gte=F("backoff_base_seconds")),
                name="erp_connection_backoff_cap",
            ),
            models.CheckConstraint(
                condition=Q(lease_seconds__gt=F("timeout_seconds")),
                name="erp_connection_lease_past_timeout",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class AccountRole(models.TextChoices):
    RECEIVABLE = "receivable", "Receivable"
    REVENUE = "revenue", "Revenue (key: metric or plan component; blank = default)"
    TAX_PAYABLE = "tax_payable", "Tax payable (key: rate, e.g. 0.19; blank = default)"
    DEFERRED_REVENUE = "deferred_revenue", "Deferred revenue (key: prepaid for prepaid credit)"
    CASH_CLEARING = "cash_clearing", "Cash / bank clearing"
    CREDIT_MEMO = "credit_memo", "Credit memos (contra revenue)"


class AccountMapping(models.Model):
    """One of our ledger's accounts -> the ERP's account code, per connection."""

    connection = models.ForeignKey(
        ErpConnection, on_delete=models.PROTECT, related_name="account_mappings"
    )
    role = models.CharField(max_length=32, choices=AccountRole.choices)
    key = models.CharField(max_length=64, blank=True, help_text="Blank: the role's default.")
    account = models.CharField(max_length=64, help_text="The ERP's account code.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connection", "role", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "role", "key"], name="account_mapping_unique"
            ),
            models.CheckConstraint(condition=~Q(account=""), name="account_mapping_account"),
        ]

    def __str__(self) -> str:
        return f"{self.role}{':' + self.key if self.key else ''} -> {self.account}"


class PartyMapping(models.Model):
    """Our customer -> the ERP's party, created by the connector on first use or mapped by hand."""

    connection = models.ForeignKey(
        ErpConnection, on_delete=models.PROTECT, related_name="party_mappings"
    )
    customer = models.ForeignKey("core.Customer", on_delete=models.PROTECT, related_name="+")
    erp_party_id = models.CharField(max_length=64)
    created_by_connector = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["connection", "customer"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "customer"], name="party_mapping_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} -> {self.erp_party_id}"


# --------------------------------------------------------------------------- ledger


class EntryKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    ADJUSTMENT = "adjustment", "Adjustment invoice"
    CREDIT_MEMO = "credit_memo", "Credit memo"
    VOID = "void", "Void (reversal)"
    PAYMENT = "payment", "Payment"
    REVENUE_RECOGNITION = "revenue_recognition", "Revenue recognition"


class JournalEntry(models.Model):
    """A balanced journal entry of our own ledger (append-only; balanced per currency).

    Accounts are our ledger's (`receivable`, `revenue:<metric or component>`,
    `tax_payable:<rate>`, `deferred_revenue`, `cash_clearing`); each connection's
    AccountMapping says what they are called in its ERP. `key` is unique per source
    (e.g. ``invoice.finalized:42``), so replaying finance events writes nothing twice.
    """

    key = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=EntryKind.choices)
    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    date = models.DateField()
    description = models.CharField(max_length=300)
    customer = models.ForeignKey(
        "core.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source_document = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source_event_id = models.BigIntegerField(null=True, blank=True)
    reversal_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "journal entries"
        indexes = [models.Index(fields=["legal_entity", "date"], name="journal_entity_date_idx")]

    def __str__(self) -> str:
        return f"JE{self.pk} {self.key}"


class JournalLine(models.Model):
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    account = models.CharField(max_length=100)
    debit = models.DecimalField(**MONEY, default=ZERO)
    credit = models.DecimalField(**MONEY, default=ZERO)
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(
        "core.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source_line = models.ForeignKey(
        "billing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    description = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["entry", "position"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "position"], name="journal_line_position"),
            # exactly one side carries a positive amount
            models.CheckConstraint(
                condition=Q(debit__gt=0, credit=0) | Q(debit=0, credit__gt=0),
                name="journal_line_one_side",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account} Dr {self.debit} Cr {self.credit}"


class ScheduleStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    RECOGNIZED = "recognized", "Recognized"
    CANCELLED = "cancelled", "Cancelled (invoice voided)"


class RevenueSchedule(models.Model):
    """A fee billed in advance, held in deferred revenue until `recognize_on`."""

    deferral_entry = models.ForeignKey(
        JournalEntry, on_delete=models.PROTECT, related_name="revenue_schedules"
    )
    invoice_line = models.OneToOneField(
        "billing.InvoiceLine", on_delete=models.PROTECT, related_name="+"
    )
    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("core.Customer", on_delete=models.PROTECT, related_name="+")
    revenue_account = models.CharField(max_length=100)
    metric = models.CharField(max_length=64, blank=True)
    component = models.CharField(max_length=64, blank=True)
    amount = models.DecimalField(**MONEY)
    recognize_on = models.DateField(help_text="Last day of the service period.")
    status = models.CharField(
        max_length=16, choices=ScheduleStatus.choices, default=ScheduleStatus.SCHEDULED
    )
    recognition_entry = models.OneToOneField(
        JournalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["recognize_on", "id"]
        indexes = [models.Index(fields=["status", "recognize_on"], name="revenue_schedule_due_idx")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="recognized") | Q(recognition_entry__isnull=False),
                name="revenue_schedule_recognized_has_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} on {self.recognize_on}"


class LedgerCursor(models.Model):
    """The last finance event id a consumer has processed."""

    name = models.CharField(max_length=64, unique=True)
    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_event_id}"


# --------------------------------------------------------------------------- outbox


class DocumentType(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    CREDIT_MEMO = "credit_memo", "Credit memo"
    JOURNAL = "journal", "Journal entry"
    INVOICE_CANCEL = "invoice_cancel", "Invoice cancellation (void)"


class PostingStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    POSTED = "posted", "Posted"
    RETRY_WAIT = "retry_wait", "Waiting to retry"
    HELD = "held", "Held (missing mapping)"
    FAILED = "failed", "Failed (permanent error)"
    DEAD = "dead", "Dead (attempts exhausted)"


#: Statuses a drain may pick up (with their time conditions).
CLAIMABLE = (PostingStatus.PENDING, PostingStatus.RETRY_WAIT, PostingStatus.IN_FLIGHT)


class Posting(models.Model):
    """One document or journal to send to one ERP connection (the outbox row).

    Written in the same transaction as the journal entry it carries. `payload` is the
    canonical document in our ledger's accounts; the drain maps accounts and party with the
    connection's mappings when it sends.
    """

    connection = models.ForeignKey(ErpConnection, on_delete=models.PROTECT, related_name="postings")
    entry = models.ForeignKey(
        JournalEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="postings"
    )
    document_type = models.CharField(max_length=32, choices=DocumentType.choices)
    external_id = models.CharField(max_length=100)
    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(
        "core.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source_document = models.ForeignKey(
        "billing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.DecimalField(**MONEY)
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    payload = models.JSONField()
    depends_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="dependents"
    )
    status = models.CharField(
        max_length=16, choices=PostingStatus.choices, default=PostingStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Sends so far (never decreases).")
    attempts_at_replay = models.PositiveIntegerField(
        default=0, help_text="`attempts` when last replayed: the retry budget counts from here."
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=100, blank=True)
    lookup_first = models.BooleanField(
        default=False, help_text="An earlier attempt's outcome is unknown: look it up first."
    )
    erp_id = models.CharField(max_length=64, blank=True)
    erp_number = models.CharField(max_length=64, blank=True)
    erp_state = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)
    last_error_class = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    posted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="posting_claim_idx"),
            models.Index(fields=["updated_at", "id"], name="posting_updated_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "external_id"], name="posting_external_id_per_connection"
            ),
            models.CheckConstraint(
                condition=~Q(status="posted") | Q(posted_at__isnull=False),
                name="posting_posted_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="in_flight") | Q(lease_expires_at__isnull=False),
                name="posting_in_flight_has_lease",
            ),
            models.CheckConstraint(
                condition=~Q(status="retry_wait") | Q(next_attempt_at__isnull=False),
                name="posting_retry_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_type} {self.external_id} [{self.status}]"

    @property
    def document_kind(self) -> DocumentKind:
        """The connector's DocumentKind of this posting (what find_by_external_id looks for)."""
        kinds: dict[str, DocumentKind] = {
            DocumentType.INVOICE: "invoice",
            DocumentType.INVOICE_CANCEL: "invoice",
            DocumentType.CREDIT_MEMO: "credit_memo",
        }
        return kinds.get(self.document_type, "journal")


class AttemptOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    POSTED = "posted", "Posted"
    TRANSIENT = "transient", "Transient error"
    UNKNOWN = "unknown_outcome", "Outcome unknown"
    PERMANENT = "permanent", "Permanent error"


class PostingAttempt(models.Model):
    """One send of a posting: written (running) before the connector is called, finished after."""

    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=20, choices=AttemptOutcome.choices, default=AttemptOutcome.RUNNING
    )
    error_class = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    exchanges = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["posting", "number"]
        constraints = [
            models.UniqueConstraint(fields=["posting", "number"], name="posting_attempt_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.posting_id}: {self.outcome}"


# --------------------------------------------------------------------------- reconciliation


class ReconciliationRun(models.Model):
    """The comparison of one legal entity's month: billing, ledger, outbox and the ERP."""

    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField()
    period_end = models.DateField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    matched = models.BooleanField(default=False)
    totals = models.JSONField(default=dict, blank=True)
    mismatches = models.JSONField(default=list, blank=True)
    requested_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation {self.legal_entity_id} {self.period_start:%Y-%m}"


class SummaryMember(models.Model):
    """A journal entry carried by a summarized-journal posting (each entry once per connection)."""

    connection = models.ForeignKey(ErpConnection, on_delete=models.PROTECT, related_name="+")
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="+")
    posting = models.ForeignKey(Posting, on_delete=models.PROTECT, related_name="summary_members")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "entry"], name="summary_member_once"),
        ]

    def __str__(self) -> str:
        return f"entry {self.entry_id} in posting {self.posting_id}"
