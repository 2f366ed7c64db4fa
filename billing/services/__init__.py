"""Every write of billing, by sub-domain; import from here (``from billing.services import x``).

* ``plans``: price plans and their versions;
* ``contracts``: contracts, amendments, the terms in force over time;
* ``runs``: billing runs (request, start, execute), with ``drafts`` (writing draft
  documents) and ``late_usage`` (corrections of finalized periods whose usage moved);
* ``finalize``: numbers, re-rating moved drafts, finance events;
* ``documents``: void, mark paid, credit memo;
* ``finance_events``: the canonical finance events and their payloads.

Each service opens its transaction, changes rows, writes one audit entry and,
for finance outcomes, a canonical `FinanceEvent` in the same transaction.
Batch services (a billing run, finalizing a run's drafts) write one audit
entry per batch transaction naming every document it touched.

Which role may do what is enforced by the views (see billing/views.py); the
services trust their caller and record the actor.
"""

from billing.services._shared import (
    BULK_INSERT_BATCH_SIZE,
    FINALIZE_BATCH_SIZE,
    LATE_USAGE_EXTRA_DAYS,
    RUN_BATCH_SIZE,
    RUN_STALE_AFTER,
    entity_rounding,
)
from billing.services.contracts import (
    contract_amend,
    contract_create,
    contract_end,
    contract_terms,
    plan_cache,
)
from billing.services.documents import (
    CreditPreview,
    credit_memo_issue,
    credit_memo_preview,
    invoice_mark_paid,
    invoice_payment_record,
    invoice_void,
)
from billing.services.drafts import ProgressFn
from billing.services.finalize import billing_run_finalize, invoice_finalize, invoices_finalize
from billing.services.finance_events import document_payload, finance_events_record
from billing.services.plans import (
    VersionTerms,
    price_plan_create,
    price_plan_preview,
    price_plan_version_add,
)
from billing.services.runs import (
    billing_run_execute,
    billing_run_request,
    billing_run_retry,
    billing_run_start,
    billing_runs_bill_due,
    month_ready_at,
)

__all__ = [
    "BULK_INSERT_BATCH_SIZE",
    "FINALIZE_BATCH_SIZE",
    "LATE_USAGE_EXTRA_DAYS",
    "ProgressFn",
    "RUN_BATCH_SIZE",
    "RUN_STALE_AFTER",
    "VersionTerms",
    "billing_run_execute",
    "billing_run_finalize",
    "billing_run_request",
    "billing_run_retry",
    "billing_run_start",
    "billing_runs_bill_due",
    "contract_amend",
    "contract_create",
    "contract_end",
    "contract_terms",
    "credit_memo_issue",
    "document_payload",
    "entity_rounding",
    "finance_events_record",
    "invoice_finalize",
    "CreditPreview",
    "credit_memo_preview",
    "invoice_mark_paid",
    "invoice_payment_record",
    "invoice_void",
    "invoices_finalize",
    "month_ready_at",
    "plan_cache",
    "price_plan_create",
    "price_plan_preview",
    "price_plan_version_add",
]
