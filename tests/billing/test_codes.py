"""Billing's error codes and audit action names are promises: their values never change."""

from __future__ import annotations

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode


def test_error_code_values_are_the_published_ones() -> None:
    assert sorted(BillingErrorCode) == sorted(
        [
            "billing_already_applied",
            "billing_amendment_in_billed_period",
            "billing_credit_empty",
            "billing_credit_exceeds",
            "billing_credit_line_unknown",
            "billing_currency_mismatch",
            "billing_invalid_contract",
            "billing_invalid_idempotency_key",
            "billing_invalid_overrides",
            "billing_invalid_period",
            "billing_invalid_plan",
            "billing_invoice_credited",
            "billing_invoice_not_draft",
            "billing_invoice_not_final",
            "billing_invoice_paid",
            "billing_invoice_void",
            "billing_not_found",
            "billing_payment_exceeds",
            "billing_payment_invalid",
            "billing_period_not_closed",
            "billing_plan_version_order",
            "billing_rating_failed",
            "billing_reason_required",
            "billing_run_ended",
            "billing_run_in_progress",
            "billing_usage_changed",
        ]
    )


def test_audit_action_values_are_the_recorded_ones() -> None:
    assert sorted(BillingAuditAction) == sorted(
        [
            "billing_run.corrections_create",
            "billing_run.create",
            "billing_run.drafts_create",
            "billing_run.enqueue",
            "billing_run.fail",
            "billing_run.finish",
            "billing_run.start",
            "contract.amend",
            "contract.create",
            "contract.end",
            "credit_memo.finalize",
            "credit_memo.issue",
            "invoice.finalize",
            "invoice.mark_paid",
            "invoice.payment_record",
            "invoice.void",
            "invoices.discard_moved_corrections",
            "invoices.finalize",
            "invoices.redraft",
            "price_plan.create",
            "price_plan.version_add",
        ]
    )
