"""Usage summaries: every aggregation against hand-computed numbers, late usage
revisions, closing, lineage selectors and their audit entries."""

from __future__ import annotations

from collections.abc import Iterable

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from core.models import Customer
from exceptions.models import AuditEntry
from metering import selectors
from metering.models import EventKey, UsageEvent, UsageSummary
from metering.services import usage_summaries_close, usage_summarize_window
from tests.conftest import requires_postgres
from tests.metering.factories import TEST_ACTOR, make_metric, put_event

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return START + timedelta(days=day - 1, hours=hour - 12)


@pytest.fixture
def globex(customer_acme: Customer) -> Customer:
    return Customer.objects.create(
        legal_entity=customer_acme.legal_entity, code="globex", name="Globex"
    )


def summarize(
    *, customer_ids: Iterable[int] | None = None, metric_codes: Iterable[str] | None = None
) -> list[UsageSummary]:
    return usage_summarize_window(
        period_start=START,
        period_end=END,
        customer_ids=customer_ids,
        metric_codes=metric_codes,
        actor=TEST_ACTOR,
    )


def by_key(summaries: list[UsageSummary]) -> dict[tuple[str, str], UsageSummary]:
    return {(s.customer.code, s.metric.code): s for s in summaries}


@pytest.mark.django_db
def test_each_aggregation_against_hand_computed_numbers(
    customer_acme: Customer, globex: Customer
) -> None:
    calls = make_metric("api_calls").metric
    storage = make_metric("storage_gb", "sum", "gb").metric
    peak = make_metric("peak_seats", "max", "seats").metric
    users = make_metric("active_users", "unique_count", "user_id").metric
    plan = make_metric("plan_tier", "latest", "tier").metric

    for day in (1, 2, 30):
        put_event(customer=customer_acme, metric=calls, at=at(day))
    put_event(customer=globex, metric=calls, at=at(5))
    # Outside the window: the last microsecond before it, and the window's (exclusive) end.
    put_event(customer=customer_acme, metric=calls, at=START - timedelta(microseconds=1))
    put_event(customer=customer_acme, metric=calls, at=END)

    for v in ("1.5", "2.25", "0.000001"):
        put_event(customer=customer_acme, metric=storage, at=at(3), value=v)
    for v in ("7", "12", "9"):
        put_event(customer=customer_acme, metric=peak, at=at(4), value=v)
    for uid in ("u1", "u2", "u1", "u3", "u2"):
        put_event(customer=customer_acme, metric=users, at=at(6), properties={"user_id": uid})
    put_event(customer=customer_acme, metric=plan, at=at(10), value="3")
    put_event(customer=customer_acme, metric=plan, at=at(20), value="5")  # the latest by time
    put_event(
        customer=customer_acme, metric=plan, at=at(15), value="4"
    )  # sent later, earlier in time

    result = by_key(summarize())
    assert result[("acme", "api_calls")].quantity == Decimal("3")
    assert result[("acme", "api_calls")].event_count == 3
    assert result[("globex", "api_calls")].quantity == Decimal("1")
    assert result[("acme", "storage_gb")].quantity == Decimal("3.750001")
    assert result[("acme", "peak_seats")].quantity == Decimal("12")
    assert result[("acme", "active_users")].quantity == Decimal("3")
    assert result[("acme", "active_users")].event_count == 5
    assert result[("acme", "plan_tier")].quantity == Decimal("5")
    assert result[("acme", "plan_tier")].aggregation == "latest"
    assert len(result) == 6
    assert all(s.revision == 0 and s.closed_at is None for s in result.values())
    assert AuditEntry.objects.filter(action="usage.summarize").count() == 1


@pytest.mark.django_db
def test_filters_and_refresh_of_open_summary(customer_acme: Customer, globex: Customer) -> None:
    calls = make_metric("api_calls").metric
    storage = make_metric("storage_gb", "sum", "gb").metric
    put_event(customer=customer_acme, metric=calls, at=at(1))
    put_event(customer=globex, metric=calls, at=at(1))
    put_event(customer=customer_acme, metric=storage, at=at(1), value="2")

    only = summarize(customer_ids=[customer_acme.pk], metric_codes=["api_calls"])
    assert [(s.customer_id, s.metric.code) for s in only] == [(customer_acme.pk, "api_calls")]

    put_event(customer=customer_acme, metric=calls, at=at(2))
    again = by_key(summarize())
    s = again[("acme", "api_calls")]
    assert (s.revision, s.quantity, s.event_count) == (0, Decimal("2"), 2)
    assert UsageSummary.objects.filter(customer=customer_acme, metric=calls).count() == 1

    # Nothing new: no write, no audit entry.
    before = AuditEntry.objects.filter(action="usage.summarize").count()
    summarize()
    assert AuditEntry.objects.filter(action="usage.summarize").count() == before


@pytest.mark.django_db
def test_late_usage_after_close_makes_a_new_full_revision(customer_acme: Customer) -> None:
    storage = make_metric("storage_gb", "sum", "gb").metric
    put_event(customer=customer_acme, metric=storage, at=at(2), value="10")
    first = summarize()[0]
    assert usage_summaries_close(summary_ids=[first.pk], actor=TEST_ACTOR) == 1
    assert usage_summaries_close(summary_ids=[first.pk], actor=TEST_ACTOR) == 0  # already closed
    assert AuditEntry.objects.filter(action="usage.summaries_close").count() == 1

    # No late events: the closed summary is current, nothing new.
    assert summarize()[0].pk == first.pk

    late = put_event(customer=customer_acme, metric=storage, at=at(3), value="2.5")
    second = summarize()[0]
    assert second.revision == 1 and second.closed_at is None
    assert second.quantity == Decimal("12.5")  # a full recomputation, not the delta
    assert second.event_count == 2
    first.refresh_from_db()
    assert first.quantity == Decimal("10") and first.closed_at is not None  # frozen

    assert list(selectors.summaries_for_event(event=late)) == [second]
    assert set(selectors.summary_events(summary=first).values_list("value", flat=True)) == {
        Decimal("10")
    }
    assert selectors.summary_events(summary=second).count() == 2


@pytest.mark.django_db
def test_summary_event_values_for_percentage_pricing(customer_acme: Customer) -> None:
    payments = make_metric("payments", "sum", "amount").metric
    put_event(
        customer=customer_acme,
        metric=payments,
        at=at(1),
        value="100.10",
        properties={"amount": "100.10"},
    )
    put_event(
        customer=customer_acme, metric=payments, at=at(2), value="0.05", properties={"amount": 0.05}
    )
    put_event(customer=customer_acme, metric=payments, at=at(3), value="1", properties={"other": 1})
    summary = summarize()[0]
    assert list(selectors.summary_event_values(summary=summary, property_name="amount")) == [
        Decimal("100.10"),
        Decimal("0.05"),
    ]
    assert sum(selectors.summary_event_values(summary=summary, property_name="value")) == Decimal(
        "101.15"
    )


@pytest.mark.django_db
def test_window_must_be_ordered() -> None:
    from core.errors import AppError

    with pytest.raises(AppError):
        usage_summarize_window(period_start=END, period_end=START, actor=TEST_ACTOR)


@pytest.mark.django_db
def test_database_refuses_a_second_open_revision_and_a_duplicate_event_key(
    customer_acme: Customer,
) -> None:
    calls = make_metric("api_calls").metric
    put_event(customer=customer_acme, metric=calls, at=at(1))
    s = summarize()[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageSummary.objects.create(
            customer=customer_acme,
            metric=calls,
            period_start=START,
            period_end=END,
            revision=1,
            aggregation="count",
            quantity=0,
            computed_at=START,
        )
    key = EventKey.objects.first()
    assert key is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        EventKey.objects.create(key=key.key, content_hash="y" * 32, received_at=START)
    assert s.pk


@requires_postgres
@pytest.mark.django_db
def test_postgres_events_are_append_only_and_partitioned(customer_acme: Customer) -> None:
    calls = make_metric("api_calls").metric
    event = put_event(customer=customer_acme, metric=calls, at=at(1))
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageEvent.objects.filter(pk=event.pk).update(value=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        EventKey.objects.filter(key__startswith="app\t").delete()
    with (
        pytest.raises(IntegrityError),
        transaction.atomic(),
    ):  # no event for a customer that does not exist
        UsageEvent.objects.create(
            source="app",
            event_id="orphan",
            customer_ref="x",
            customer_id=987654,
            metric=calls,
            metric_version=event.metric_version,
            timestamp=START,
            properties={},
            received_at=START,
        )
    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'metering_usageevent'")
        assert cur.fetchone()[0] == "p"  # a partitioned table
