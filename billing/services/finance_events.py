"""Canonical finance events: the hand-off to erp_sync and other consumers."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection

from billing.models import (
    FinanceEvent,
    Invoice,
    InvoiceLine,
    InvoiceTaxLine,
)
from billing.services._shared import BULK_INSERT_BATCH_SIZE
from core import locks

# --------------------------------------------------------------------------- finance events


def _lock_finance_events() -> None:
    """Serialise finance-event writers until commit so ids become visible in id order (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [locks.FINANCE_EVENTS])


def finance_events_record(events: Sequence[FinanceEvent]) -> None:
    """Append finance events in the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("finance events are recorded inside the transaction of the change")
    if events:
        _lock_finance_events()
        FinanceEvent.objects.bulk_create(events, batch_size=BULK_INSERT_BATCH_SIZE)


def _money(value: Decimal, minor_units: int) -> str:
    return str(value.quantize(Decimal(1).scaleb(-minor_units)))


def document_payload(
    inv: Invoice,
    lines: Sequence[InvoiceLine],
    tax_lines: Sequence[InvoiceTaxLine],
    *,
    minor_units: int,
    customer_code: str,
    contract_code: str,
    credits_number: str | None,
) -> dict[str, Any]:
    """The stable JSON shape of a document in `invoice.finalized` / `credit_memo.issued` (schema 1)."""
    m = minor_units
    return {
        "schema": 1,
        "document": {
            "id": inv.pk,
            "kind": inv.kind,
            "number": inv.number,
            "issue_date": str(inv.issue_date),
            "legal_entity_id": inv.legal_entity_id,
            "customer_id": inv.customer_id,
            "customer_code": customer_code,
            "contract_id": inv.contract_id,
            "contract_code": contract_code,
            "currency": inv.currency_id,
            "period_start": str(inv.period_start),
            "period_end": str(inv.period_end),
            "subtotal": _money(inv.subtotal, m),
            "tax_total": _money(inv.tax_total, m),
            "total": _money(inv.total, m),
            "credits_id": inv.credits_id,
            "credits_number": credits_number,
            "reason": inv.reason,
        },
        "lines": [
            {
                "id": ln.pk,
                "position": ln.position,
                "kind": ln.kind,
                "component": ln.component,
                "metric": ln.metric,
                "description": ln.description,
                "quantity": str(ln.quantity),
                "unit_price": None if ln.unit_price is None else str(ln.unit_price),
                "amount": _money(ln.amount, m),
                "tax_code": ln.tax_code,
                "service_start": str(ln.service_start),
                "service_end": str(ln.service_end),
                "usage_summary_id": ln.usage_summary_id,
                "credits_line_id": ln.credits_line_id,
            }
            for ln in lines
        ],
        "tax_lines": [
            {
                "name": t.name,
                "tax_code": t.tax_code,
                "jurisdiction": t.jurisdiction,
                "rate": str(t.rate),
                "taxable_amount": _money(t.taxable_amount, m),
                "amount": _money(t.amount, m),
            }
            for t in tax_lines
        ],
    }
