"""Tables of billing: price plans, contracts, tax rates, billing runs, invoices, finance events.

Workflows live in services.py; here are only columns, constraints and small
properties.  Invariants that must hold even if a service is bypassed are
database constraints here, or PostgreSQL triggers in the migrations
(finalized documents are immutable; finance events are append-only).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django.db import models
from django.db.models import F, Q, Value

from billing.money import ROUND_HALF_EVEN, ROUND_HALF_UP
from core.fields import MONEY, RATE

if TYPE_CHECKING:
    from billing.services.runs import RunOutcome
#: Half of the smallest stored money unit (4 places).
SUM_TOLERANCE = Value(Decimal("0.00005"))


class Rounding(models.TextChoices):
    HALF_UP = ROUND_HALF_UP, "Half up (0.125 → 0.13)"
    HALF_EVEN = ROUND_HALF_EVEN, "Half even (0.125 → 0.12)"


class EntityBillingSettings(models.Model):
    """Per legal entity billing settings (rounding mode, document prefixes)."""

    legal_entity = models.OneToOneField(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="billing_settings"
    )
    rounding = models.CharField(max_length=20, choices=Rounding.choices, default=Rounding.HALF_UP)
    invoice_prefix = models.CharField(max_length=16, default="INV")
    credit_memo_prefix = models.CharField(max_length=16, default="CN")
    #: The entity's part of its document numbers, unique in the group: "US" numbers its
    #: documents US-INV-2026-000001, US-CN-2026-000001. Blank: numbers without it (as before).
    #: Changing it changes only numbers assigned afterwards; the counters go on gaplessly.
    document_prefix = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        verbose_name_plural = "entity billing settings"
        constraints = [
            models.UniqueConstraint(
                fields=["document_prefix"],
                condition=~Q(document_prefix=""),
                name="entity_document_prefix_unique",
            ),
            models.CheckConstraint(
                condition=Q(document_prefix__regex=r"^([A-Z0-9]{1,8})?$"),
                name="entity_document_prefix_format",
            ),
        ]

    def __str__(self) -> str:
        return f"billing settings of {self.legal_entity_id}"


# --------------------------------------------------------------------------- plans


class PricePlan(models.Model):
    """A named price plan in one currency; its prices live in effective-dated versions."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    default_tax_code = models.CharField(
        max_length=32, default="standard", help_text="Product tax code of components without one."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.currency_id})"


class PricePlanVersion(models.Model):
    """The plan's components from `effective_from` (local date) until the next version.

    `components` is the JSON list parsed by billing.rating.components_from_config.
    `component_meta` maps component code -> {"tax_code": ..., "amount_property": ...}.
    Versions are never edited once a contract has been billed on them: add a new one.
    """

    plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    effective_from = models.DateField()
    components = models.JSONField()
    component_meta = models.JSONField(default=dict, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plan", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "version"], name="plan_version_unique"),
            models.UniqueConstraint(
                fields=["plan", "effective_from"], name="plan_version_date_unique"
            ),
            models.CheckConstraint(condition=Q(version__gte=1), name="plan_version_from_1"),
        ]

    def __str__(self) -> str:
        return f"{self.plan.code} v{self.version} from {self.effective_from}"


# --------------------------------------------------------------------------- contracts


class Cadence(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"
    ANNUAL = "annual", "Annual"


class Contract(models.Model):
    """A customer's agreement with one legal entity: plan, overrides, cadence, dates.

    The terms here are the initial terms; amendments change plan and/or
    overrides from their effective date.  `start_date` inclusive, `end_date`
    exclusive (null = open-ended), both local dates in the entity's time zone.
    """

    code = models.SlugField(max_length=64)
    customer = models.ForeignKey(
        "core.Customer", on_delete=models.PROTECT, related_name="contracts"
    )
    legal_entity = models.ForeignKey(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="contracts"
    )
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="contracts")
    overrides = models.JSONField(default=dict, blank=True)
    cadence = models.CharField(max_length=16, choices=Cadence.choices, default=Cadence.MONTHLY)
    anchor_day = models.PositiveSmallIntegerField(default=1)
    anchor_month = models.PositiveSmallIntegerField(default=1)
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    prepaid_balance = models.DecimalField(**MONEY, default=Decimal(0))
    #: Payment terms: an invoice is due this many days after its issue date ("net 30").
    payment_terms_days = models.PositiveSmallIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["legal_entity", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["legal_entity", "code"], name="contract_code_per_entity"
            ),
            models.CheckConstraint(
                condition=Q(anchor_day__gte=1, anchor_day__lte=28), name="contract_anchor_day"
            ),
            models.CheckConstraint(
                condition=Q(anchor_month__gte=1, anchor_month__lte=12), name="contract_anchor_month"
            ),
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gt=F("start_date")),
                name="contract_end_after_start",
            ),
            models.CheckConstraint(
                condition=Q(prepaid_balance__gte=0), name="contract_prepaid_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.customer_id})"


class ContractAmendment(models.Model):
    """New terms from `effective_from` (local date): plan and/or overrides replace the previous ones."""

    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="amendments")
    effective_from = models.DateField()
    plan = models.ForeignKey(
        PricePlan, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    overrides = models.JSONField(null=True, blank=True)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["contract", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["contract", "effective_from"], name="amendment_one_per_day"
            ),
            models.CheckConstraint(
                condition=Q(plan__isnull=False) | Q(overrides__isnull=False),
                name="amendment_changes_something",
            ),
        ]

    def __str__(self) -> str:
        return f"amendment of {self.contract_id} from {self.effective_from}"


# --------------------------------------------------------------------------- tax


class TaxRate(models.Model):
    """A tax rate of one legal entity; blank jurisdiction / tax_code match any (less specific)."""

    legal_entity = models.ForeignKey(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="tax_rates"
    )
    jurisdiction = models.CharField(
        max_length=32, blank=True, help_text="Customer jurisdiction, e.g. US-CA."
    )
    tax_code = models.CharField(max_length=32, blank=True, help_text="Product tax code, e.g. saas.")
    name = models.CharField(max_length=100, help_text="Shown on the invoice, e.g. 'CA sales tax'.")
    rate = models.DecimalField(
        max_digits=9, decimal_places=6, help_text="A fraction: 0.0725 = 7.25 %."
    )
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["legal_entity", "jurisdiction", "tax_code", "valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(rate__gte=0, rate__lte=1), name="tax_rate_fraction"),
            models.UniqueConstraint(
                fields=["legal_entity", "jurisdiction", "tax_code", "valid_from"],
                name="tax_rate_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.rate}"


# --------------------------------------------------------------------------- runs


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


#: The statuses of a run attempt that has not ended: at most one per entity and month.
RUN_IN_PROGRESS_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)


class BillingRun(models.Model):
    """One attempt at billing a legal entity's calendar month (`period_start` .. `period_end`).

    Bills every contract period that ends inside (period_start, period_end]. Each
    attempt is its own row (`attempt` 1, 2, ... per entity and month, decision 52):
    a re-run creates nothing new for contracts already invoiced, and at most one
    attempt per entity and month is pending or running (a partial unique index).
    """

    legal_entity = models.ForeignKey(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="billing_runs"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    attempt = models.PositiveIntegerField(
        default=1, help_text="1, 2, ... per legal entity and month: every run is its own row."
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    invoices_created = models.PositiveIntegerField(default=0)
    adjustments_created = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Not stored: set by billing_run_execute on the run it returns, this execution's counts.
    outcome: RunOutcome

    class Meta:
        ordering = ["-period_start", "legal_entity", "-attempt"]
        constraints = [
            models.UniqueConstraint(
                fields=["legal_entity", "period_start", "attempt"], name="billing_run_attempt"
            ),
            # Two starts for one entity and month at once: the second insert waits for the
            # first and is refused, so only one attempt runs (the service says so).
            models.UniqueConstraint(
                fields=["legal_entity", "period_start"],
                condition=Q(status__in=RUN_IN_PROGRESS_STATUSES),
                name="billing_run_one_in_progress",
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=F("period_start")), name="billing_run_period"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.legal_entity_id} {self.period_start:%Y-%m}"

    @property
    def label(self) -> str:
        return f"{self.period_start:%Y-%m}"

    @property
    def in_progress(self) -> bool:
        return self.status in RUN_IN_PROGRESS_STATUSES

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, int(self.processed * 100 / self.total))


# --------------------------------------------------------------------------- documents


class DocumentKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    ADJUSTMENT = "adjustment", "Adjustment invoice"
    CREDIT_MEMO = "credit_memo", "Credit memo"


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    FINALIZED = "finalized", "Finalized"
    VOID = "void", "Void"
    PAID = "paid", "Paid"


class Invoice(models.Model):
    """An invoice, adjustment invoice or credit memo (one table, one immutability rule).

    Credit memos carry negative amounts and `credits` the document they credit.
    Once finalized only `status` (-> void / paid), its timestamps and
    `credited_total` may change (PostgreSQL trigger; services refuse too).
    """

    kind = models.CharField(
        max_length=16, choices=DocumentKind.choices, default=DocumentKind.INVOICE
    )
    status = models.CharField(
        max_length=16, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    legal_entity = models.ForeignKey(
        "core.LegalEntity", on_delete=models.PROTECT, related_name="invoices"
    )
    customer = models.ForeignKey("core.Customer", on_delete=models.PROTECT, related_name="invoices")
    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="invoices")
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    billing_run = models.ForeignKey(
        BillingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    period_start = models.DateField()
    period_end = models.DateField()
    credits = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="corrections",
        help_text="The original invoice an adjustment invoice or credit memo corrects.",
    )
    correction_no = models.PositiveIntegerField(
        default=0, help_text="1, 2, ... per corrected invoice."
    )
    usage_revision = models.PositiveIntegerField(
        default=0, help_text="Highest usage summary revision rated."
    )
    reason = models.TextField(blank=True)
    number = models.CharField(max_length=64, null=True, blank=True)
    issue_date = models.DateField(null=True, blank=True)
    rounding = models.CharField(max_length=20, choices=Rounding.choices, default=Rounding.HALF_UP)
    subtotal = models.DecimalField(**MONEY, default=Decimal(0))
    tax_total = models.DecimalField(**MONEY, default=Decimal(0))
    total = models.DecimalField(**MONEY, default=Decimal(0))
    credited_total = models.DecimalField(**MONEY, default=Decimal(0))
    prepaid_applied = models.DecimalField(**MONEY, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        indexes = [
            models.Index(
                fields=["legal_entity", "status", "period_start"], name="invoice_entity_status_idx"
            ),
            models.Index(fields=["customer", "period_start"], name="invoice_customer_idx"),
        ]
        constraints = [
            # Re-running a billing run never creates a second invoice for a contract period.
            models.UniqueConstraint(
                fields=["contract", "period_start", "period_end"],
                condition=Q(kind="invoice"),
                name="invoice_one_per_contract_period",
            ),
            models.UniqueConstraint(
                fields=["credits", "correction_no"],
                condition=Q(credits__isnull=False),
                name="invoice_correction_no_unique",
            ),
            models.UniqueConstraint(
                fields=["legal_entity", "number"], name="invoice_number_per_entity"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=F("period_start")), name="invoice_period"
            ),
            models.CheckConstraint(
                condition=Q(status="draft", number__isnull=True)
                | (~Q(status="draft") & Q(number__isnull=False) & Q(issue_date__isnull=False)),
                name="invoice_number_iff_final",
            ),
            models.CheckConstraint(
                condition=Q(kind="invoice", credits__isnull=True)
                | (~Q(kind="invoice") & Q(credits__isnull=False)),
                name="invoice_corrections_reference_original",
            ),
            # total = subtotal + tax; the half-unit tolerance is for SQLite, which compares decimals as
            # floats (PostgreSQL's numeric is exact and every column has at most 4 places).
            models.CheckConstraint(
                condition=Q(total__gte=F("subtotal") + F("tax_total") - SUM_TOLERANCE)
                & Q(total__lte=F("subtotal") + F("tax_total") + SUM_TOLERANCE),
                name="invoice_total_sum_v2",
            ),
            models.CheckConstraint(
                condition=~Q(kind="credit_memo") | Q(total__lte=0), name="credit_memo_not_positive"
            ),
            # A document is never credited beyond its total.
            models.CheckConstraint(
                condition=Q(credited_total__gte=0) & Q(credited_total__lte=F("total"))
                | Q(credited_total=0),
                name="invoice_credited_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(status="void") | Q(voided_at__isnull=False),
                name="invoice_void_has_time",
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft #{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status != InvoiceStatus.DRAFT

    @property
    def open_amount(self) -> Decimal:
        return self.total - self.credited_total


class LineKind(models.TextChoices):
    USAGE = "usage", "Usage"
    FIXED_FEE = "fixed_fee", "Fixed fee"
    MINIMUM_TRUE_UP = "minimum_true_up", "Minimum commitment true-up"
    DISCOUNT = "discount", "Discount"
    CREDIT_DRAWDOWN = "credit_drawdown", "Prepaid credit"
    ADJUSTMENT = "adjustment", "Usage adjustment"
    CREDIT = "credit", "Credit"


class InvoiceLine(models.Model):
    """One priced line, pointing at the usage summary it was rated from (usage lines)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=LineKind.choices)
    component = models.CharField(max_length=64, blank=True)
    metric = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(**RATE)
    unit_price = models.DecimalField(**RATE, null=True, blank=True)
    tiers = models.JSONField(default=list, blank=True)
    amount = models.DecimalField(**MONEY)
    tax_code = models.CharField(max_length=32, blank=True)
    usage_summary = models.ForeignKey(
        "metering.UsageSummary",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoice_lines",
    )
    rated_quantity = models.DecimalField(
        **RATE, null=True, blank=True, help_text="The summary's quantity when this line was rated."
    )
    rated_event_count = models.BigIntegerField(null=True, blank=True)
    service_start = models.DateField()
    service_end = models.DateField()
    credits_line = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_lines",
        help_text="On credit memo / adjustment lines: the original line corrected.",
    )
    credited_amount = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position"),
            models.CheckConstraint(
                condition=Q(service_end__gt=F("service_start")), name="invoice_line_service"
            ),
            # A line is never credited beyond its own amount.
            models.CheckConstraint(
                condition=Q(credited_amount=0)
                | Q(credited_amount__gt=0, credited_amount__lte=F("amount")),
                name="invoice_line_credited_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"line {self.position} of {self.invoice_id}"

    @property
    def creditable(self) -> Decimal:
        """What a credit memo may still credit on this line."""
        return max(self.amount - self.credited_amount, Decimal(0))


class InvoiceTaxLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="tax_lines")
    name = models.CharField(max_length=100)
    tax_code = models.CharField(max_length=32, blank=True)
    jurisdiction = models.CharField(max_length=32, blank=True)
    rate = models.DecimalField(max_digits=9, decimal_places=6)
    taxable_amount = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["invoice", "id"]

    def __str__(self) -> str:
        return f"{self.name} {self.amount}"


class DocumentCounter(models.Model):
    """Gapless numbering: the last number used per legal entity, series and year.

    Locked with SELECT ... FOR UPDATE inside the finalize transaction, so a
    rollback returns the numbers it took.
    """

    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    series = models.CharField(max_length=16)
    year = models.PositiveIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["legal_entity", "series", "year"], name="document_counter_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.legal_entity_id} {self.series} {self.year}: {self.last_number}"


class FinanceEvent(models.Model):
    """A canonical finance event (append-only; trigger on PostgreSQL).

    Consumers read rows with id > the last id they processed.  Writers take a
    transaction-level advisory lock on PostgreSQL before inserting, so ids
    become visible in commit order and a consumer never skips one.
    """

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField()
    legal_entity = models.ForeignKey("core.LegalEntity", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"#{self.id} {self.type}"


class ActionKey(models.Model):
    """A one-time key of a state-changing request (a form's token, a client's idempotency key).

    The first request with a key claims it in its own transaction and applies
    the action; any other request with the same key (a double submit, a retry)
    is told that it was applied, and by which document. A refused or
    rolled-back action leaves no key behind, so it may be tried again.
    """

    KEY_MAX_LENGTH = 100

    key = models.CharField(max_length=KEY_MAX_LENGTH, unique=True)
    action = models.CharField(max_length=40)
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    # what the action was on when it is not one invoice: "billing run ll-us 2026-11",
    # "contract acme-1", "price plan basic" (the page's run forms, the API's plan and contract
    # actions with an Idempotency-Key)
    subject = models.CharField(max_length=200, blank=True)
    result = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.action} of {self.invoice_id or self.subject} ({self.key})"


class PaymentMethod(models.TextChoices):
    BANK_TRANSFER = "bank_transfer", "Bank transfer"
    CARD = "card", "Card"
    DIRECT_DEBIT = "direct_debit", "Direct debit"
    CHEQUE = "cheque", "Cheque"
    OTHER = "other", "Other"


class Payment(models.Model):
    """A payment received against a finalized invoice. Append-only (PostgreSQL trigger).

    An invoice's balance due is its total less credit memos less payments; the
    payment that brings it to zero marks the invoice paid
    (`billing.services.invoice_payment_record`).
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    currency = models.ForeignKey("core.Currency", on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY)
    received_on = models.DateField()
    method = models.CharField(max_length=20, choices=PaymentMethod.choices)
    reference = models.CharField(max_length=200, blank=True)
    recorded_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_on", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"payment {self.amount} {self.currency_id} on {self.invoice_id}"
