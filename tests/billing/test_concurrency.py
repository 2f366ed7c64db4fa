"""Gapless numbers when several people finalize at the same moment (PostgreSQL row locks)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from django.db import connections

from billing import services
from billing.models import FinanceEvent, Invoice
from tests.billing.conftest import ACTOR, bill, contract, customer, entity, metric, plan, send
from tests.conftest import requires_postgres

THREADS = 4


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_finalizes_take_consecutive_numbers_without_gaps_or_duplicates() -> None:
    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    p = plan(
        "basic",
        us.base_currency,
        [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}],
    )
    for i in range(THREADS):
        cust = customer(us, f"c{i}")
        contract(cust, p, date(2026, 10, 1))
        send(cust, "api_calls", datetime(2026, 11, 5, tzinfo=UTC), count=i + 1)
    bill(us, "2026-11")
    drafts = list(Invoice.objects.filter(status="draft").order_by("pk"))
    assert len(drafts) == THREADS
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def finalize(invoice: Invoice) -> None:
        try:
            barrier.wait()
            services.invoice_finalize(invoice=invoice, actor=ACTOR)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finalize, args=(d,)) for d in drafts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    numbers = sorted(n or "" for n in Invoice.objects.values_list("number", flat=True))
    first = Invoice.objects.first()
    assert first is not None and first.issue_date is not None
    year = first.issue_date.year
    assert numbers == [f"INV-{year}-{n:06d}" for n in range(1, THREADS + 1)]
    ids = list(
        FinanceEvent.objects.order_by("id").values_list("payload__document__number", flat=True)
    )
    assert sorted(ids) == numbers
