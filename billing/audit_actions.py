"""Audit action names billing writes. Values are kept: the audit page and its readers filter on them."""

from enum import StrEnum


class BillingAuditAction(StrEnum):
    PRICE_PLAN_CREATE = "price_plan.create"
    PRICE_PLAN_VERSION_ADD = "price_plan.version_add"
    CONTRACT_CREATE = "contract.create"
    CONTRACT_AMEND = "contract.amend"
    CONTRACT_END = "contract.end"
    RUN_CREATE = "billing_run.create"
    RUN_ENQUEUE = "billing_run.enqueue"
    RUN_START = "billing_run.start"
    RUN_FAIL = "billing_run.fail"
    RUN_FINISH = "billing_run.finish"
    RUN_DRAFTS_CREATE = "billing_run.drafts_create"  # one per batch of drafts (decision 6)
    RUN_CORRECTIONS_CREATE = "billing_run.corrections_create"
    DISCARD_MOVED_CORRECTIONS = "invoices.discard_moved_corrections"
    REDRAFT = "invoices.redraft"
    INVOICE_FINALIZE = "invoice.finalize"
    CREDIT_MEMO_FINALIZE = "credit_memo.finalize"
    INVOICES_FINALIZE = "invoices.finalize"  # one per batch finalized
    INVOICE_VOID = "invoice.void"
    INVOICE_MARK_PAID = "invoice.mark_paid"  # the payment that brings the balance to zero
    PAYMENT_RECORD = "invoice.payment_record"  # a partial payment: a balance stays due
    CREDIT_MEMO_ISSUE = "credit_memo.issue"
