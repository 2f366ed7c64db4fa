"""The run button goes through the django-q2 broker to the billing task (ORM broker, or Redis in CI)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from django.contrib.auth.models import User
from django.test import Client
from importlib import import_module

import pytest

from billing.models import BillingRun
from tests.billing.conftest import contract, customer, entity, invoice_of, metric, plan, send

pytestmark = [pytest.mark.taskqueue, pytest.mark.django_db(transaction=True)]


def test_run_button_queues_the_run_through_the_broker(client: Client, integrator: User) -> None:
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    us = entity("ll-us", "USD", 2, "UTC")
    metric("api_calls")
    cust = customer(us, "acme")
    c = contract(
        cust,
        plan(
            "basic",
            us.base_currency,
            [{"type": "per_unit", "code": "api", "metric": "api_calls", "unit_price": "0.10"}],
        ),
        date(2026, 9, 1),
    )
    send(cust, "api_calls", datetime(2026, 10, 20, tzinfo=UTC), count=3)
    broker = get_broker()
    broker.purge_queue()
    client.force_login(integrator)
    assert (
        client.post(
            "/billing/runs/start/",
            {"entity": "ll-us", "period": "2026-10", "idempotency_key": "r1"},
        ).status_code
        == 302
    )
    run = BillingRun.objects.get()
    items = broker.dequeue()
    assert items, "the button queued nothing"
    ack_id, payload = items[0]
    task = SignedPackage.loads(payload)
    assert (task["func"], task["args"]) == (
        "billing.tasks.billing_run_task",
        (run.pk, "integrator"),
    )
    module, func = task["func"].rsplit(".", 1)
    getattr(import_module(module), func)(*task["args"])
    broker.acknowledge(ack_id)
    run.refresh_from_db()
    assert run.status == "done" and run.invoices_created == 1
    assert invoice_of(c).total == Decimal("0.30")
