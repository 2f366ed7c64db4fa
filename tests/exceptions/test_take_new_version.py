"""Taking the new version of a duplicate conflict (decision 51): the version re-sent supersedes
the event that stood, under four eyes; summaries, billing and lineage count the replacement;
an event already on a finalized invoice is refused."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from billing import selectors as billing_selectors
from billing import services as billing
from billing.models import Invoice
from core.errors import AppError
from core.models import ApiScope, Customer
from exceptions.models import AuditEntry, CaseProposal, ExceptionCase
from exceptions.workbench import dispatch
from exceptions.workbench.services import Caller
from metering import selectors as metering_selectors
from metering import services as metering
from metering.models import DuplicateConflict, EventSupersession, UsageEvent, UsageSummary
from tests.billing.conftest import ACTOR, bill, contract, customer, entity, invoice_of, lines
from tests.billing.conftest import metric as make_metric
from tests.billing.conftest import plan as make_plan

pytestmark = pytest.mark.django_db
D = Decimal
NOV_10 = datetime(2026, 11, 10, 12, tzinfo=UTC)


def world() -> tuple[Any, Customer, Any]:
    """ll-us (USD, UTC), customer acme (app:ll-us-acme) on 0.40 USD per GB stored (a sum of the
    events' `gb`) since 2026-10-01."""
    ent = entity("ll-us", "USD", 2, "UTC")
    make_metric("storage", aggregation="sum", value_property="gb")
    cust = customer(ent, "acme")
    con = contract(
        cust,
        make_plan(
            "per-gb",
            ent.base_currency,
            [{"type": "per_unit", "code": "gb", "metric": "storage", "unit_price": "0.40"}],
        ),
        date(2026, 10, 1),
    )
    return ent, cust, con


def send(event_id: str, ts: datetime, gb: str, *, now: datetime | None = None) -> Any:
    ev = {
        "source": "app",
        "event_id": event_id,
        "customer_ref": "ll-us-acme",
        "metric": "storage",
        "timestamp": ts.isoformat(),
        "properties": {"gb": gb},
    }
    return metering.usage_ingest(items=[(ev, ev)], actor=ACTOR, now=now or ts + timedelta(hours=1))


def conflict_case(event_id: str = "s-1") -> tuple[ExceptionCase, DuplicateConflict]:
    conflict = DuplicateConflict.objects.get(event_id=event_id)
    assert conflict.case_id is not None
    return ExceptionCase.objects.get(pk=conflict.case_id), conflict


def take(case: ExceptionCase, conflict: DuplicateConflict, caller: Caller) -> str:
    case.refresh_from_db()
    return dispatch.run(
        case=case,
        caller=caller,
        action="take_new_version",
        data={
            "version": str(case.version),
            "conflict_id": str(conflict.pk),
            "reason_code": "source_data_error",
            "comment": "the producer fixed the reading and re-sent it",
        },
    )


def one_conflict() -> tuple[ExceptionCase, DuplicateConflict]:
    """The world, and s-1 sent with 10 GB then re-sent with 11 GB: its conflict case."""
    world()
    send("s-1", NOV_10, "10")
    send("s-1", NOV_10, "11")
    return conflict_case()


def taken(clerk: Any, approver: Any) -> tuple[ExceptionCase, DuplicateConflict]:
    """one_conflict(), its new version proposed by the clerk and approved by the approver."""
    case, conflict = one_conflict()
    take(case, conflict, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))
    return case, conflict


def approve(case: ExceptionCase, caller: Caller) -> str:
    case.refresh_from_db()
    return dispatch.run(
        case=case, caller=caller, action="approve", data={"version": str(case.version)}
    )


def test_superseded_before_billing_the_invoice_bills_the_new_value(clerk, approver) -> None:
    ent, _, con = world()
    send("s-1", NOV_10, "10")
    send("s-2", NOV_10 + timedelta(days=2), "5.5")
    redelivery = send("s-1", NOV_10, "12.25")  # same id, other content: a conflict
    assert redelivery.counts["duplicate"] == 1 and redelivery.conflicting == {0}
    case, conflict = conflict_case()

    said = take(case, conflict, Caller.for_user(clerk))
    assert "waits for a different approver" in said
    case.refresh_from_db()
    assert case.status == "awaiting_approval"
    assert not EventSupersession.objects.exists()  # nothing happens before the approval
    said = approve(case, Caller.for_user(approver))
    assert "New version of app:s-1 taken" in said
    case.refresh_from_db()
    assert case.status == "resolved"

    original = UsageEvent.objects.get(event_id="s-1", properties__gb="10")
    replacement = UsageEvent.objects.get(event_id="s-1", properties__gb="12.25")
    s = EventSupersession.objects.get()
    assert (s.original_seq, s.replacement_seq) == (original.seq, replacement.seq)
    assert s.conflict_id == conflict.pk and s.case_id == case.pk

    bill(ent, "2026-11")
    inv = invoice_of(con)
    # (12.25 + 5.5) GB x 0.40 = 17.75 x 0.40 = 7.10 (the original would have been 15.5 -> 6.20)
    assert lines(inv) == [("usage", "gb", D("7.10"))]
    line = inv.lines.get()
    rated = line.usage_summary
    assert rated is not None and (rated.quantity, rated.event_count) == (D("17.75"), 2)
    behind = list(billing_selectors.line_events(line=line).values_list("seq", flat=True))
    assert original.seq not in behind and replacement.seq in behind and len(behind) == 2
    # the event history tab: the original was billed nowhere, the replacement on this invoice
    assert not billing_selectors.event_invoice_lines(event_seq=original.seq).exists()
    assert [ln.pk for ln in billing_selectors.event_invoice_lines(event_seq=replacement.seq)] == [
        line.pk
    ]

    entry = AuditEntry.objects.get(action="usage.supersede")
    assert entry.before is not None and entry.after is not None
    assert entry.before["event"]["properties"] == {"gb": "10"}
    assert entry.after["event"]["properties"] == {"gb": "12.25"}
    assert entry.actor_label == "approver" and "source_data_error" in entry.reason
    proposal = CaseProposal.objects.get(case=case)
    assert (proposal.proposed_by_label, proposal.approved_by_label, proposal.status) == (
        "clerk",
        "approver",
        "applied",
    )


def test_a_new_version_in_another_window_recomputes_both_windows(clerk, approver) -> None:
    world()
    oct_20 = datetime(2026, 10, 20, tzinfo=UTC)
    send("s-1", oct_20, "10")
    send("s-2", NOV_10, "5.5")
    oct_w = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    nov_w = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    for start, end in (oct_w, nov_w):
        metering.usage_summarize_window(period_start=start, period_end=end, actor=ACTOR)

    def summary(w: tuple[datetime, datetime]) -> UsageSummary:
        return UsageSummary.objects.get(period_start=w[0], period_end=w[1])

    assert (summary(oct_w).quantity, summary(nov_w).quantity) == (D("10"), D("5.5"))
    # the producer re-sends s-1 dated in November with 7 GB
    send("s-1", datetime(2026, 11, 3, tzinfo=UTC), "7", now=datetime(2026, 11, 3, 1, tzinfo=UTC))
    case, conflict = conflict_case()
    take(case, conflict, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))

    october, november = summary(oct_w), summary(nov_w)
    assert (october.quantity, october.event_count) == (D("0"), 0)
    assert (november.quantity, november.event_count) == (D("12.5"), 2)
    assert not metering_selectors.summary_events(summary=october).exists()
    replacement = UsageEvent.objects.get(event_id="s-1", properties__gb="7")
    assert replacement.seq in set(
        metering_selectors.summary_events(summary=november).values_list("seq", flat=True)
    )
    # a second refresh finds nothing to change
    assert metering.usage_summarize_window(
        period_start=oct_w[0], period_end=oct_w[1], actor=ACTOR
    ) == [october]
    october.refresh_from_db()
    assert october.quantity == D("0")


def test_an_original_on_a_finalized_invoice_is_refused_with_the_way_to_correct_it(clerk) -> None:
    ent, _, con = world()
    send("s-1", NOV_10, "10")
    bill(ent, "2026-11")
    inv = billing.invoice_finalize(invoice=invoice_of(con), actor=ACTOR)
    send("s-1", NOV_10, "12", now=NOV_10 + timedelta(days=21))
    case, conflict = conflict_case()

    with pytest.raises(AppError) as refused:
        take(case, conflict, Caller.for_user(clerk))
    assert refused.value.code == "event_billed"
    assert f"finalized invoice {inv.number}" in refused.value.message
    assert "credit memo or an adjustment" in refused.value.message
    assert not CaseProposal.objects.exists()
    # metering refuses it too, whoever calls: the original is in a closed summary
    with pytest.raises(AppError) as also:
        metering.usage_event_supersede(conflict_id=conflict.pk, reason="try", actor=ACTOR)
    assert also.value.code == "supersession_billed"
    assert not EventSupersession.objects.exists()
    inv.refresh_from_db()
    assert inv.total == D("4.00") and lines(inv) == [("usage", "gb", D("4.00"))]


def test_four_eyes_an_approver_cannot_approve_their_own_new_version(approver, clerk) -> None:
    case, conflict = one_conflict()
    me = Caller.for_user(approver)
    take(case, conflict, me)
    with pytest.raises(AppError) as refused:
        approve(case, me)
    assert refused.value.code == "self_approval"
    with pytest.raises(AppError) as clerk_refused:  # and a clerk may not approve at all
        approve(case, Caller.for_user(clerk))
    assert clerk_refused.value.code == "action_not_allowed"
    assert not EventSupersession.objects.exists()
    case.refresh_from_db()
    assert case.status == "awaiting_approval"


def test_taking_twice_or_replaying_the_request_applies_once(make_api_key, api_client) -> None:
    case, conflict = one_conflict()
    ops = api_client(make_api_key(ApiScope.ADMIN, name="ops").raw_key)
    ops2 = api_client(make_api_key(ApiScope.ADMIN, name="ops2").raw_key)
    url = f"/api/v1/exception-cases/{case.pk}/actions/"
    body = {
        "version": case.version,
        "conflict_id": conflict.pk,
        "reason_code": "source_data_error",
        "comment": "re-sent with the right reading",
    }
    proposed = ops.post(url + "take_new_version", body, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    assert proposed.status_code == 200, proposed.json()
    assert proposed.json()["case"]["status"] == "awaiting_approval"
    replay = ops.post(url + "take_new_version", body, format="json", HTTP_IDEMPOTENCY_KEY="t-1")
    assert replay.headers["Idempotent-Replay"] == "true" and CaseProposal.objects.count() == 1
    version = proposed.json()["case"]["version"]
    own = ops.post(url + "approve", {"version": version}, format="json")
    assert own.status_code == 403 and own.json()["code"] == "self_approval"

    approved = ops2.post(
        url + "approve", {"version": version}, format="json", HTTP_IDEMPOTENCY_KEY="a-1"
    )
    assert approved.status_code == 200 and approved.json()["case"]["status"] == "resolved"
    again = ops2.post(
        url + "approve", {"version": version}, format="json", HTTP_IDEMPOTENCY_KEY="a-1"
    )
    assert again.headers["Idempotent-Replay"] == "true" and again.json() == approved.json()
    late = ops.post(
        url + "take_new_version",
        body | {"version": approved.json()["case"]["version"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="t-2",
    )
    assert late.status_code == 409 and late.json()["code"] == "supersession_done"
    # metering itself applies a conflict once: the second call returns the first supersession
    first = EventSupersession.objects.get()
    assert metering.usage_event_supersede(conflict_id=conflict.pk, reason="x", actor=ACTOR) == first
    assert UsageEvent.objects.filter(event_id="s-1").count() == 2  # the original and one new
    assert AuditEntry.objects.filter(action="usage.supersede").count() == 1


def test_the_taken_version_re_sent_is_a_duplicate_and_a_third_one_a_conflict(
    clerk, approver
) -> None:
    case, conflict = taken(clerk, approver)
    again = send("s-1", NOV_10, "11", now=NOV_10 + timedelta(hours=3))
    assert again.counts["duplicate"] == 1 and again.conflicting == set()
    third = send("s-1", NOV_10, "12", now=NOV_10 + timedelta(hours=4))
    assert third.conflicting == {0}
    # taking the third supersedes the replacement in turn: one event stands for s-1
    case = ExceptionCase.objects.get(kind="duplicate_conflict", status="open")
    newest = DuplicateConflict.objects.filter(event_id="s-1").order_by("-id").first()
    assert newest is not None
    take(case, newest, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))
    standing = metering_selectors.counted_usage_events().filter(event_id="s-1")
    assert [e.properties["gb"] for e in standing] == ["12"]


def test_an_unknown_conflict_or_another_kind_of_case_is_refused(clerk) -> None:
    case, conflict = one_conflict()
    case.refresh_from_db()
    with pytest.raises(AppError) as bad:
        dispatch.run(
            case=case,
            caller=Caller.for_user(clerk),
            action="take_new_version",
            data={"conflict_id": "999999", "reason_code": "other", "comment": "x"},
        )
    assert bad.value.code == "invalid_correction"
    case.kind = "usage_rejected"  # the same action on another kind of case
    with pytest.raises(AppError) as other:
        dispatch.run(
            case=case,
            caller=Caller.for_user(clerk),
            action="take_new_version",
            data={"conflict_id": str(conflict.pk), "reason_code": "other", "comment": "x"},
        )
    assert other.value.code == "action_not_available"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_database_refuses_to_change_a_supersession(clerk, approver) -> None:
    case, conflict = taken(clerk, approver)
    with pytest.raises(IntegrityError), transaction.atomic():
        EventSupersession.objects.update(reason="rewritten")
    with pytest.raises(IntegrityError), transaction.atomic():
        EventSupersession.objects.all().delete()


def test_keeping_the_original_withdraws_a_pending_new_version(clerk) -> None:
    ent, _, con = world()
    send("s-1", NOV_10, "10")
    send("s-1", NOV_10, "99")
    case, conflict = conflict_case()
    take(case, conflict, Caller.for_user(clerk))
    case.refresh_from_db()
    dispatch.run(
        case=case,
        caller=Caller.for_user(clerk),
        action="keep_original",
        data={"version": str(case.version)},
    )
    assert CaseProposal.objects.get(case=case).status == "withdrawn"
    case.refresh_from_db()
    assert case.status == "resolved" and not EventSupersession.objects.exists()
    bill(ent, "2026-11")
    assert lines(invoice_of(con)) == [("usage", "gb", D("4.00"))]
    assert not Invoice.objects.filter(kind="credit_memo").exists()


def test_a_new_version_dated_into_a_finalized_period_is_billed_by_an_adjustment(
    clerk, approver
) -> None:
    """The original stands in an open November; the version re-sent is dated in October, whose
    invoice is finalized: that is late usage, and the next run adjusts October (decision 51)."""
    ent, _, con = world()
    send("s-0", datetime(2026, 10, 5, tzinfo=UTC), "10")
    bill(ent, "2026-10")
    october = billing.invoice_finalize(
        invoice=invoice_of(con, period_start=date(2026, 10, 1)), actor=ACTOR
    )
    assert october.total == D("4.00")
    send("s-1", NOV_10, "5")
    send("s-1", datetime(2026, 10, 25, tzinfo=UTC), "5", now=NOV_10 + timedelta(hours=2))
    case, conflict = conflict_case()
    take(case, conflict, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))

    bill(ent, "2026-11")
    november = invoice_of(con, period_start=date(2026, 11, 1))
    assert lines(november) == [("usage", "gb", D("0.00"))]  # s-1 left November
    adjustment = Invoice.objects.get(kind="adjustment", credits=october)
    # October re-rated: (10 + 5) GB x 0.40 = 6.00, billed 4.00: an adjustment of 2.00
    assert adjustment.total == D("2.00")
    october.refresh_from_db()
    assert october.total == D("4.00")  # the finalized invoice is not changed


@pytest.mark.skipif(connection.vendor != "postgresql", reason="threads on PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_supersessions_ingest_and_summaries_at_once_do_not_deadlock() -> None:
    """Two supersessions, two ingest batches and a summary refresh at the same time: each
    waits its turn on the watermark lock (core/locks.py order) and the totals add up."""
    import threading

    from django.db import connections

    world()
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    window = (at, at + timedelta(hours=1))
    now = datetime.now(UTC)
    for n in (1, 2):
        send(f"s-{n}", at + timedelta(minutes=n), "10", now=now)
        send(f"s-{n}", at + timedelta(minutes=n), "20", now=now)
    metering.usage_summarize_window(period_start=window[0], period_end=window[1], actor=ACTOR)
    conflicts = list(DuplicateConflict.objects.order_by("id").values_list("pk", flat=True))
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def job(fn: Any) -> Any:
        def run() -> None:
            try:
                barrier.wait()
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        return threading.Thread(target=run)

    threads = [
        job(lambda c=c: metering.usage_event_supersede(conflict_id=c, reason="r", actor=ACTOR))
        for c in conflicts
    ]
    threads += [
        job(lambda n=n: send(f"new-{n}", at + timedelta(minutes=30), "1", now=now)) for n in (1, 2)
    ]
    threads.append(
        job(
            lambda: metering.usage_summarize_window(
                period_start=window[0], period_end=window[1], actor=ACTOR
            )
        )
    )
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert EventSupersession.objects.count() == 2
    current = metering.usage_summarize_window(
        period_start=window[0], period_end=window[1], actor=ACTOR
    )
    # s-1 and s-2 now 20 each, plus two new events of 1
    assert [(s.quantity, s.event_count) for s in current] == [(D("42"), 4)]


def test_a_draft_rated_on_the_original_is_re_rated_when_finalized(clerk, approver) -> None:
    ent, _, con = world()
    send("s-1", NOV_10, "10")
    send("s-2", NOV_10 + timedelta(days=2), "5.5")
    bill(ent, "2026-11")
    assert lines(invoice_of(con)) == [("usage", "gb", D("6.20"))]  # 15.5 x 0.40, a draft
    send("s-1", NOV_10, "12.25", now=NOV_10 + timedelta(days=3))
    case, conflict = conflict_case()
    take(case, conflict, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))
    final = billing.invoice_finalize(invoice=invoice_of(con), actor=ACTOR)
    # re-rated at finalize from the recomputed summary: 17.75 x 0.40 = 7.10
    assert lines(final) == [("usage", "gb", D("7.10"))] and final.total == D("7.10")


@pytest.mark.parametrize("fmt", ["cloudevents", "lago"])
def test_a_cloudevent_or_a_lago_event_re_sent_is_taken_as_its_adapter_reads_it(
    fmt: str, make_api_key, api_client, clerk, approver
) -> None:
    """The conflict keeps the payload in its own format; taking it reads it as intake did: a
    CloudEvent's data, a Lago event's properties and its subscription's mapping."""
    from metering.models import CustomerMapping

    _, cust, _ = world()
    CustomerMapping.objects.create(source="lago", customer_ref="sub-acme", customer=cust)
    writer = api_client(make_api_key(ApiScope.USAGE_WRITE, name="producer").raw_key)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

    def sent(gb: str) -> None:
        if fmt == "cloudevents":
            body: dict[str, Any] = {
                "specversion": "1.0",
                "id": "ce-1",
                "source": "app",
                "subject": "ll-us-acme",
                "type": "storage",
                "time": at.isoformat(),
                "data": {"gb": gb},
            }
            resp = writer.post(
                "/api/v1/events",
                data=json.dumps(body),
                content_type="application/cloudevents+json",
            )
        else:
            body = {
                "event": {
                    "transaction_id": "ce-1",
                    "external_subscription_id": "sub-acme",
                    "code": "storage",
                    "timestamp": int(at.timestamp()),
                    "properties": {"gb": gb},
                }
            }
            resp = writer.post("/compat/lago/api/v1/events", body, format="json")
            if gb != "10":  # Lago's own answer to a re-sent transaction id; the conflict is kept
                assert resp.status_code == 422, resp.content
                return
        assert resp.status_code < 300, resp.content

    sent("10")
    sent("12.5")
    case, conflict = conflict_case("ce-1")
    take(case, conflict, Caller.for_user(clerk))
    approve(case, Caller.for_user(approver))
    case.refresh_from_db()
    assert case.status == "resolved"
    standing = metering_selectors.current_event(source=conflict.source, event_id="ce-1")
    assert standing is not None and standing.properties == {"gb": "12.5"}
    assert standing.customer_id == cust.pk and standing.timestamp == at
