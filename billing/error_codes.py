"""Stable error codes of billing. A code is a promise to API clients: never rename one or change its value."""

from enum import StrEnum


class BillingErrorCode(StrEnum):
    INVALID_PLAN = (
        "billing_invalid_plan"  # components failed validation (extra: rating code and path)
    )
    INVALID_OVERRIDES = "billing_invalid_overrides"
    PLAN_VERSION_ORDER = (
        "billing_plan_version_order"  # a new version must start after the latest one
    )
    CURRENCY_MISMATCH = "billing_currency_mismatch"
    INVALID_CONTRACT = "billing_invalid_contract"
    AMENDMENT_IN_BILLED_PERIOD = "billing_amendment_in_billed_period"
    INVALID_PERIOD = "billing_invalid_period"
    PERIOD_NOT_CLOSED = "billing_period_not_closed"  # the grace window has not passed yet
    RUN_IN_PROGRESS = (
        "billing_run_in_progress"  # another attempt of the month is pending or running
    )
    RUN_ENDED = "billing_run_ended"  # an attempt runs once: run the month again for a new one
    RATING_FAILED = "billing_rating_failed"
    INVOICE_NOT_DRAFT = "billing_invoice_not_draft"  # finalized documents are immutable
    INVOICE_NOT_FINAL = "billing_invoice_not_final"
    INVOICE_PAID = "billing_invoice_paid"
    INVOICE_VOID = "billing_invoice_void"
    INVOICE_CREDITED = "billing_invoice_credited"  # cannot void: credit memos exist
    CREDIT_EXCEEDS = "billing_credit_exceeds"  # a credit memo never exceeds what it credits
    CREDIT_EMPTY = "billing_credit_empty"
    CREDIT_LINE_UNKNOWN = "billing_credit_line_unknown"
    REASON_REQUIRED = "billing_reason_required"
    NOT_FOUND = "billing_not_found"
    USAGE_CHANGED = "billing_usage_changed"  # a correction draft is out of date: run billing again
    ALREADY_APPLIED = "billing_already_applied"  # the request's one-time key was used: applied once
    INVALID_IDEMPOTENCY_KEY = "billing_invalid_idempotency_key"
    PAYMENT_INVALID = "billing_payment_invalid"  # not positive, not in whole minor units, no method
    PAYMENT_EXCEEDS = "billing_payment_exceeds"  # more than the balance due
