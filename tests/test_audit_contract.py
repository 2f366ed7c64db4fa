"""Every public write service writes exactly one matching audit entry (actor, action, object).

One case per service of core, exceptions, metering and billing, called through
their stable public names. A case builds its data first (with the shared test
helpers), then the service runs; the entries it wrote are those after the
chain's last seq. Exactly one must name the service's actor, action and
object, and the others it writes must be the ones listed for it: the cases it
opens or closes, the ingest batch a re-submission goes through, and the
per-batch entries of bulk work (docs/decisions.md 6: a billing run writes
start, drafts and finish; a batch finalize one entry for the batch; a CSV
import one per ingest batch).

`test_every_public_service_has_a_case` makes a new service without a case (or
a reason it writes nothing) fail here.
"""

from __future__ import annotations

import io
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Model

import billing.services
import core.services
import exceptions.services
import metering.services
from billing.models import BillingRun, Contract, Invoice
from billing.periods import parse_period
from core.actors import Actor
from core.models import Currency, Customer, LegalEntity
from exceptions.models import AuditEntry, ExceptionCase
from exceptions.services import object_ref
from metering.models import CustomerMapping, DuplicateConflict, RejectedEvent
from tests.billing.conftest import (
    ACTOR,
    bill,
    contract,
    customer,
    entity,
    invoice_of,
    metric,
    plan,
    send,
    tax_rate,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 10, tzinfo=UTC)

# Public functions of the service modules that change nothing (reads, pure helpers) or that
# are one step of other services, never called on their own.
NOT_AUDITED: dict[str, str] = {
    "core.services.api_key_lookup": "a read (finds the key of a bearer token)",
    "exceptions.services.audit_content": "pure: the bytes an entry's hash covers",
    "exceptions.services.entry_hash_of": "pure: an entry's hash",
    "exceptions.services.object_ref": "pure: (type, id, repr) of a row",
    "exceptions.services.audit_verify_chain": "a read (walks the chain)",
    "exceptions.services.audit_append_cte": (
        "pure: the SQL of one entry for a caller's statement (PostgreSQL; the entry it appends"
        " is checked in tests/exceptions/test_audit.py and by the drain's own tests)"
    ),
    "exceptions.services.cases_lock": "takes locks (the cases a transaction will touch)",
    "metering.services.check_header": "pure: checks a CSV header against the expected columns",
    "metering.services.csv_template": "pure: the CSV template a user downloads",
    "metering.services.import_source": "pure: the source a CSV row without one is counted under",
    "metering.services.events_intake": (
        "decodes a request and calls usage_ingest (its per-batch entry is checked above) or"
        " writes the dead letter of a malformed body"
    ),
    "metering.services.lago_event_intake": "decodes a Lago request and calls usage_ingest",
    "metering.services.lago_batch_intake": "decodes a Lago batch and calls usage_ingest",
    "metering.services.unmapped_fingerprint": "pure: the fingerprint of an unmapped-customer case",
    "metering.services.supersession_check": (
        "a check: what taking a conflict's version would supersede (writes nothing but the"
        " month's event partition validation may create)"
    ),
    "billing.services.entity_rounding": "a read (an entity's rounding mode)",
    "billing.services.credit_memo_preview": "a read (what a credit memo would carry; writes nothing)",
    "billing.services.price_plan_preview": "pure: what typed usage would cost (the editors' preview)",
    "billing.services.billing_runs_bill_due": (
        "writes nothing itself: it calls billing_run_request and billing_run_execute per due"
        " entity, whose entries are checked above"
    ),
    "billing.services.billing_run_retry": (
        "writes nothing itself: it calls billing_run_request and billing_run_execute for a new"
        " attempt of the run's month, whose entries are checked above"
    ),
    "billing.services.contract_terms": "a read (contracts' terms in force)",
    "billing.services.plan_cache": "a read (price plans by id)",
    "billing.services.document_payload": "pure: a document's finance-event payload",
    "billing.services.month_ready_at": "pure: when a month closes for billing",
    "billing.services.finance_events_record": (
        "a step of the services that finalize, void and credit documents (they write the entry)"
    ),
}


@dataclass(frozen=True)
class Expected:
    action: str
    object_type: str
    object_id: str
    also: tuple[str, ...] = ()  # the other actions the call writes, by design
    actor: Actor = ACTOR

    @classmethod
    def of(cls, action: str, obj: Model, *, also: tuple[str, ...] = ()) -> Expected:
        object_type, object_id, _ = object_ref(obj)
        return cls(action, object_type, object_id, also)


@dataclass
class Call:
    """The service call under test, and what it must write (given its result)."""

    run: Callable[[], Any]
    expect: Callable[[Any], Expected]


@dataclass
class World:
    """Data the cases share, built on first use."""

    _cache: dict[str, Any] = field(default_factory=dict)

    def once(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def us(self) -> LegalEntity:
        return self.once("us", lambda: entity("ll-us", "USD", 2, "UTC"))

    @property
    def acme(self) -> Customer:
        def build() -> Customer:
            metric("api_calls")
            return customer(self.us, "acme")

        return self.once("acme", build)

    @property
    def contract(self) -> Contract:
        def build() -> Contract:
            tax_rate(self.us, "0.10", name="VAT")
            p = plan(
                "basic",
                self.us.base_currency,
                [
                    {
                        "type": "per_unit",
                        "code": "api",
                        "metric": "api_calls",
                        "unit_price": "0.10",
                    },
                    {"type": "fixed_fee", "code": "platform", "amount": "20.00"},
                ],
            )
            return contract(self.acme, p, date(2026, 10, 1))

        return self.once("contract", build)

    @property
    def draft(self) -> Invoice:
        def build() -> Invoice:
            self.contract  # noqa: B018 - billed below
            send(self.acme, "api_calls", NOVEMBER, count=3)
            bill(self.us, "2026-11")
            return invoice_of(self.contract)

        return self.once("draft", build)

    @property
    def final(self) -> Invoice:
        return self.once(
            "final",
            lambda: billing.services.invoice_finalize(invoice=self.draft, actor=ACTOR, now=NOW),
        )

    def event(
        self, event_id: str, *, customer_ref: str = "ll-us-acme", **kw: Any
    ) -> dict[str, Any]:
        self.acme  # noqa: B018 - the metric and the mapping exist
        ev = {
            "source": "app",
            "event_id": event_id,
            "customer_ref": customer_ref,
            "metric": "api_calls",
            "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        }
        ev.update(kw)
        return ev


def _case(w: World, *, fingerprint: str = "fp-1") -> ExceptionCase:
    return exceptions.services.case_open_or_update(
        kind="test_failure", fingerprint=fingerprint, title="It failed", actor=ACTOR
    )[0]


# --- core ---------------------------------------------------------------------------------------


def core_api_key_create(w: World) -> Call:
    return Call(
        lambda: core.services.api_key_create(name="k", scopes=["admin"], actor=ACTOR),
        lambda issued: Expected.of("api_key.create", issued.api_key),
    )


def core_api_key_revoke(w: World) -> Call:
    key = core.services.api_key_create(name="k", scopes=["admin"], actor=ACTOR).api_key
    return Call(
        lambda: core.services.api_key_revoke(api_key=key, actor=ACTOR, reason="leaked"),
        lambda key: Expected.of("api_key.revoke", key),
    )


def core_currency_ensure_create(w: World) -> Call:
    return Call(
        lambda: core.services.currency_ensure(code="XTS", name="Test", minor_units=2, actor=ACTOR),
        lambda cur: Expected.of("currency.create", cur),
    )


def core_currency_ensure_change(w: World) -> Call:
    Currency.objects.update_or_create(code="XTS", defaults={"name": "Test", "minor_units": 2})
    return Call(
        lambda: core.services.currency_ensure(code="XTS", name="Test", minor_units=3, actor=ACTOR),
        lambda cur: Expected.of("currency.change", cur),
    )


def core_legal_entity_create(w: World) -> Call:
    usd = Currency.objects.get_or_create(code="USD", defaults={"name": "USD", "minor_units": 2})[0]
    return Call(
        lambda: core.services.legal_entity_create(
            code="ll-x",
            name="X",
            base_currency=usd,
            country="US",
            timezone_name="UTC",
            actor=ACTOR,
        ),
        lambda entity: Expected.of("legal_entity.create", entity),
    )


def core_customer_create(w: World) -> Call:
    us = w.us
    return Call(
        lambda: core.services.customer_create(legal_entity=us, code="c1", name="C1", actor=ACTOR),
        lambda cust: Expected.of("customer.create", cust),
    )


# --- exceptions ---------------------------------------------------------------------------------


def exceptions_audit_record(w: World) -> Call:
    us = w.us

    def run() -> AuditEntry:
        with transaction.atomic():
            return exceptions.services.audit_record(actor=ACTOR, action="thing.touch", obj=us)

    return Call(run, lambda _: Expected.of("thing.touch", us))


def exceptions_audit_record_many(w: World) -> Call:
    us = w.us

    def run() -> int:
        with transaction.atomic():
            spec = exceptions.services.AuditSpec.of(us, "thing.touch")
            return exceptions.services.audit_record_many(actor=ACTOR, entries=[spec])

    return Call(run, lambda _: Expected.of("thing.touch", us))


def exceptions_cases_open_or_update_many(w: World) -> Call:
    """It returns its cases' entries; the caller appends them (here, as ingest does)."""
    opening = exceptions.services.CaseOpening(kind="test_failure", fingerprint="fp-m", title="x")

    def run() -> ExceptionCase:
        with transaction.atomic():
            opened = exceptions.services.cases_open_or_update_many(openings=[opening], actor=ACTOR)
            exceptions.services.audit_record_many(actor=ACTOR, entries=opened.audit)
        return ExceptionCase.objects.get(pk=opened.case_ids["fp-m"])

    return Call(run, lambda case: Expected.of("case.open", case))


def exceptions_case_open_or_update_new(w: World) -> Call:
    return Call(lambda: _case(w), lambda case: Expected.of("case.open", case))


def exceptions_case_open_or_update_recur(w: World) -> Call:
    _case(w)
    return Call(lambda: _case(w), lambda case: Expected.of("case.recur", case))


def exceptions_case_close_resolved(w: World) -> Call:
    case = _case(w)
    return Call(
        lambda: exceptions.services.case_close(
            case=case, actor=ACTOR, status="resolved", resolution="fixed upstream"
        ),
        lambda case: Expected.of("case.resolved", case),
    )


def exceptions_case_resolve_open(w: World) -> Call:
    _case(w)
    return Call(
        lambda: exceptions.services.case_resolve_open(
            fingerprint="fp-1", actor=ACTOR, resolution="mapped"
        ),
        lambda case: Expected.of("case.resolved", case),
    )


def exceptions_case_close_dismissed(w: World) -> Call:
    case = _case(w)
    return Call(
        lambda: exceptions.services.case_close(
            case=case, actor=ACTOR, status="dismissed", resolution="not a failure"
        ),
        lambda case: Expected.of("case.dismissed", case),
    )


# --- metering -----------------------------------------------------------------------------------


def metering_metric_create(w: World) -> Call:
    return Call(
        lambda: metering.services.metric_create(
            code="seats", name="Seats", aggregation="count", actor=ACTOR
        ),
        lambda version: Expected.of("metric.create", version.metric),
    )


def metering_metric_version_add(w: World) -> Call:
    version = metering.services.metric_create(
        code="seats", name="Seats", aggregation="count", actor=ACTOR
    )
    return Call(
        lambda: metering.services.metric_version_add(
            metric=version.metric,
            effective_from=datetime.now(UTC) + timedelta(days=1),
            name="Seats (v2)",
            actor=ACTOR,
        ),
        lambda new: Expected.of("metric.version_add", new.metric),
    )


def metering_customer_mapping_create(w: World) -> Call:
    cust = w.acme
    return Call(
        lambda: metering.services.customer_mapping_create(
            source="crm", customer_ref="acme-7", customer=cust, actor=ACTOR
        ),
        lambda mapping: Expected.of("mapping.create", mapping),
    )


def metering_usage_ingest(w: World) -> Call:
    items = [(e, e) for e in (w.event("i-1"), w.event("i-2"))]
    return Call(
        lambda: metering.services.usage_ingest(items=items, actor=ACTOR),
        lambda result: Expected("usage.ingest", "metering.ingestbatch", result.batch_id),
    )


def metering_usage_ingest_held(w: World) -> Call:
    """An event for an unknown customer_ref is held, and its case opened, in the same call."""
    ev = w.event("h-1", customer_ref="nobody")
    return Call(
        lambda: metering.services.usage_ingest(items=[(ev, ev)], actor=ACTOR),
        lambda result: Expected(
            "usage.ingest", "metering.ingestbatch", result.batch_id, also=("case.open",)
        ),
    )


def metering_dead_letter_request(w: World) -> Call:
    return Call(
        lambda: metering.services.dead_letter_request(
            code="malformed_request", message="not JSON", raw="{", actor=ACTOR, api_key=None
        ),
        lambda rejected: Expected.of("usage.ingest_refused", rejected, also=("case.open",)),
    )


def metering_held_events_release(w: World) -> Call:
    ev = w.event("h-2", customer_ref="later")
    metering.services.usage_ingest(items=[(ev, ev)], actor=ACTOR)
    mapping = CustomerMapping.objects.create(source="app", customer_ref="later", customer=w.acme)
    return Call(
        lambda: metering.services.held_events_release(mapping=mapping, actor=ACTOR),
        lambda _: Expected.of("usage.release", mapping, also=("case.resolved",)),
    )


def metering_rejected_event_resubmit(w: World) -> Call:
    bad = w.event("r-1", metric="no_such_metric")
    metering.services.usage_ingest(items=[(bad, bad)], actor=ACTOR)
    rejected = RejectedEvent.objects.get(event_id="r-1")
    fixed = w.event("r-1")
    return Call(
        lambda: metering.services.rejected_event_resubmit(
            rejected=rejected, corrected=fixed, actor=ACTOR
        ),
        lambda _: Expected.of("usage.resubmit", rejected, also=("usage.ingest",)),
    )


def metering_usage_event_supersede(w: World) -> Call:
    ts = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    first, second = w.event("v-1", timestamp=ts), w.event("v-1", timestamp=ts, value="2")
    metering.services.usage_ingest(items=[(first, first)], actor=ACTOR)
    metering.services.usage_ingest(items=[(second, second)], actor=ACTOR)
    conflict = DuplicateConflict.objects.get(event_id="v-1")
    return Call(
        lambda: metering.services.usage_event_supersede(
            conflict_id=conflict.pk, reason="the producer's fix", actor=ACTOR
        ),
        lambda supersession: Expected.of("usage.supersede", supersession),
    )


def _window(w: World) -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    ev = w.event("s-1", timestamp=(start + timedelta(minutes=10)).isoformat())
    metering.services.usage_ingest(items=[(ev, ev)], actor=ACTOR)
    return start, start + timedelta(hours=1)


def metering_usage_summarize_window(w: World) -> Call:
    start, end = _window(w)
    return Call(
        lambda: metering.services.usage_summarize_window(
            period_start=start, period_end=end, actor=ACTOR
        ),
        lambda _: Expected(
            "usage.summarize", "metering.usagesummary", f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
        ),
    )


def metering_usage_summaries_close(w: World) -> Call:
    start, end = _window(w)
    summaries = metering.services.usage_summarize_window(
        period_start=start, period_end=end, actor=ACTOR
    )
    ids = [s.pk for s in summaries]
    assert len(ids) == 1
    return Call(
        lambda: metering.services.usage_summaries_close(summary_ids=ids, actor=ACTOR),
        lambda _: Expected("usage.summaries_close", "metering.usagesummary", str(ids[0])),
    )


def metering_usage_summaries_refresh(w: World) -> Call:
    """Each window with events past its watermark is summarized again: one entry per window."""
    start, end = _window(w)
    metering.services.usage_summarize_window(period_start=start, period_end=end, actor=ACTOR)
    late = w.event("s-2", timestamp=(start + timedelta(minutes=20)).isoformat())
    metering.services.usage_ingest(items=[(late, late)], actor=ACTOR)
    return Call(
        lambda: metering.services.usage_summaries_refresh(actor=ACTOR),
        lambda _: Expected(
            "usage.summarize", "metering.usagesummary", f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
        ),
    )


def _csv(w: World, rows: int) -> bytes:
    w.acme  # noqa: B018 - the metric and the mapping exist
    ts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    lines = ["event_id,source,customer_ref,metric,timestamp"]
    lines += [f"csv-{i},app,ll-us-acme,api_calls,{ts}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def _last_object_id(action: str) -> str:
    entry = AuditEntry.objects.filter(action=action).order_by("seq").last()
    assert entry is not None
    return entry.object_id


def metering_usage_import_stream(w: World) -> Call:
    """A CSV file of 1,001 rows is two ingest batches (CSV_BATCH = 1,000): two entries."""
    data = _csv(w, 1001)
    return Call(
        lambda: metering.services.usage_import_stream(
            fileobj=io.BytesIO(data), actor=ACTOR, error_report=io.StringIO()
        ),
        lambda _: Expected(
            "usage.ingest",
            "metering.ingestbatch",
            _last_object_id("usage.ingest"),  # the batch ids are random: the count is the check
            also=("usage.ingest",),
        ),
    )


def metering_import_job_create(w: World) -> Call:
    upload = SimpleUploadedFile("usage.csv", _csv(w, 2), content_type="text/csv")
    return Call(
        lambda: metering.services.import_job_create(upload=upload, user=None, actor=ACTOR),
        lambda job: Expected.of("usage.import_queued", job),
    )


def metering_import_job_run(w: World) -> Call:
    upload = SimpleUploadedFile("usage.csv", _csv(w, 2), content_type="text/csv")
    job = metering.services.import_job_create(upload=upload, user=None, actor=ACTOR)
    return Call(
        lambda: metering.services.import_job_run(job_id=job.pk, actor=ACTOR),
        lambda job: Expected.of("usage.import_finished", job, also=("usage.ingest",)),
    )


# --- billing ------------------------------------------------------------------------------------


def billing_price_plan_create(w: World) -> Call:
    usd = w.us.base_currency
    return Call(
        lambda: billing.services.price_plan_create(code="p", name="P", currency=usd, actor=ACTOR),
        lambda p: Expected.of("price_plan.create", p),
    )


def billing_price_plan_version_add(w: World) -> Call:
    p = billing.services.price_plan_create(
        code="p", name="P", currency=w.us.base_currency, actor=ACTOR
    )
    return Call(
        lambda: billing.services.price_plan_version_add(
            plan=p,
            effective_from=date(2026, 1, 1),
            components=[{"type": "fixed_fee", "code": "base", "amount": "10.00"}],
            actor=ACTOR,
        ),
        lambda version: Expected.of("price_plan.version_add", p),
    )


def billing_contract_create(w: World) -> Call:
    p = plan("p2", w.us.base_currency, [{"type": "fixed_fee", "code": "base", "amount": "10.00"}])
    cust = w.acme
    return Call(
        lambda: billing.services.contract_create(
            code="c-new", customer=cust, plan=p, start_date=date(2026, 10, 1), actor=ACTOR
        ),
        lambda c: Expected.of("contract.create", c),
    )


def billing_contract_amend(w: World) -> Call:
    c = w.contract
    other = plan("p3", w.us.base_currency, [{"type": "fixed_fee", "code": "base", "amount": "5"}])
    return Call(
        lambda: billing.services.contract_amend(
            contract=c, effective_from=date(2026, 11, 1), reason="upgrade", plan=other, actor=ACTOR
        ),
        lambda _: Expected.of("contract.amend", c),
    )


def billing_contract_end(w: World) -> Call:
    c = w.contract
    return Call(
        lambda: billing.services.contract_end(
            contract=c, end_date=date(2026, 12, 31), reason="churn", actor=ACTOR
        ),
        lambda c: Expected.of("contract.end", c),
    )


def billing_billing_run_request(w: World) -> Call:
    us = w.us
    return Call(
        lambda: billing.services.billing_run_request(
            legal_entity=us, month=parse_period("2026-11"), actor=ACTOR, now=NOW
        ),
        lambda run: Expected.of("billing_run.create", run),
    )


def billing_billing_run_start(w: World) -> Call:
    """The request creates the run (its entry) and the start queues it (the matching one)."""
    us = w.us
    return Call(
        lambda: billing.services.billing_run_start(
            legal_entity=us, month=parse_period("2026-10"), actor=ACTOR
        ),
        lambda run: Expected.of("billing_run.enqueue", run, also=("billing_run.create",)),
    )


def billing_billing_run_execute(w: World) -> Call:
    """Per batch (decision 6): start, the month's usage summaries, its drafts in one entry, finish."""
    w.contract  # noqa: B018
    send(w.acme, "api_calls", NOVEMBER, count=3)
    run = billing.services.billing_run_request(
        legal_entity=w.us, month=parse_period("2026-11"), actor=ACTOR, now=NOW
    )
    return Call(
        lambda: billing.services.billing_run_execute(run_id=run.pk, actor=ACTOR, now=NOW),
        lambda run: Expected.of(
            "billing_run.finish",
            run,
            also=("billing_run.start", "usage.summarize", "billing_run.drafts_create"),
        ),
    )


def billing_invoice_finalize(w: World) -> Call:
    draft = w.draft
    return Call(
        lambda: billing.services.invoice_finalize(invoice=draft, actor=ACTOR, now=NOW),
        # finalizing closes the usage summaries the invoice was rated from
        lambda inv: Expected.of("invoice.finalize", inv, also=("usage.summaries_close",)),
    )


def billing_invoices_finalize(w: World) -> Call:
    """A batch finalize writes one entry for the batch (decision 6)."""
    draft = w.draft
    return Call(
        lambda: billing.services.invoices_finalize(invoice_ids=[draft.pk], actor=ACTOR, now=NOW),
        lambda _: Expected(
            "invoices.finalize",
            "billing.invoice",
            f"{draft.pk}..{draft.pk}",
            also=("usage.summaries_close",),
        ),
    )


def billing_billing_run_finalize(w: World) -> Call:
    draft = w.draft
    run = BillingRun.objects.get(legal_entity=w.us)
    return Call(
        lambda: billing.services.billing_run_finalize(run=run, actor=ACTOR),
        lambda _: Expected(
            "invoices.finalize",
            "billing.invoice",
            f"{draft.pk}..{draft.pk}",
            also=("usage.summaries_close",),
        ),
    )


def billing_invoice_void(w: World) -> Call:
    final = w.final
    return Call(
        lambda: billing.services.invoice_void(invoice=final, reason="wrong", actor=ACTOR),
        lambda inv: Expected.of("invoice.void", inv),
    )


def billing_invoice_mark_paid(w: World) -> Call:
    final = w.final
    return Call(
        lambda: billing.services.invoice_mark_paid(invoice=final, actor=ACTOR),
        lambda inv: Expected.of("invoice.mark_paid", inv),
    )


def billing_invoice_payment_record(w: World) -> Call:
    final = w.final
    return Call(
        lambda: billing.services.invoice_payment_record(
            invoice=final,
            amount=Decimal("0.01"),  # a partial payment: a balance stays due
            received_on=date(2026, 12, 1),
            method="bank_transfer",
            reference="partial",
            actor=ACTOR,
        ),
        lambda payment: Expected.of("invoice.payment_record", payment.invoice),
    )


def billing_credit_memo_issue(w: World) -> Call:
    final = w.final
    return Call(
        lambda: billing.services.credit_memo_issue(
            invoice=final, reason="goodwill", actor=ACTOR, now=NOW
        ),
        lambda memo: Expected.of("credit_memo.issue", memo),
    )


CASES: dict[str, Callable[[World], Call]] = {
    fn.__name__: fn
    for fn in [
        core_api_key_create,
        core_api_key_revoke,
        core_currency_ensure_create,
        core_currency_ensure_change,
        core_legal_entity_create,
        core_customer_create,
        exceptions_audit_record,
        exceptions_audit_record_many,
        exceptions_cases_open_or_update_many,
        exceptions_case_open_or_update_new,
        exceptions_case_open_or_update_recur,
        exceptions_case_close_resolved,
        exceptions_case_close_dismissed,
        exceptions_case_resolve_open,
        metering_metric_create,
        metering_metric_version_add,
        metering_customer_mapping_create,
        metering_usage_ingest,
        metering_usage_ingest_held,
        metering_dead_letter_request,
        metering_held_events_release,
        metering_rejected_event_resubmit,
        metering_usage_event_supersede,
        metering_usage_summarize_window,
        metering_usage_summaries_close,
        metering_usage_summaries_refresh,
        metering_usage_import_stream,
        metering_import_job_create,
        metering_import_job_run,
        billing_price_plan_create,
        billing_price_plan_version_add,
        billing_contract_create,
        billing_contract_amend,
        billing_contract_end,
        billing_billing_run_request,
        billing_billing_run_start,
        billing_billing_run_execute,
        billing_invoice_finalize,
        billing_invoices_finalize,
        billing_billing_run_finalize,
        billing_invoice_void,
        billing_invoice_mark_paid,
        billing_invoice_payment_record,
        billing_credit_memo_issue,
    ]
}


def _last_seq() -> int:
    last = AuditEntry.objects.order_by("-seq").values_list("seq", flat=True).first()
    return last or 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_service_writes_exactly_one_matching_audit_entry(
    name: str, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path  # the CSV import keeps its upload
    call = CASES[name](World())
    mark = _last_seq()
    result = call.run()
    expected = call.expect(result)
    written = list(AuditEntry.objects.filter(seq__gt=mark).order_by("seq"))
    matching = [
        e
        for e in written
        if (e.action, e.object_type, e.object_id, e.actor_kind, e.actor_label)
        == (
            expected.action,
            expected.object_type,
            expected.object_id,
            expected.actor.kind,
            expected.actor.label,
        )
    ]
    assert len(matching) == 1, [
        (e.action, e.object_type, e.object_id, e.actor_label) for e in written
    ]
    assert sorted(e.action for e in written) == sorted([expected.action, *expected.also])
    assert all(e.actor_label == expected.actor.label for e in written)


def _public_functions(module: types.ModuleType) -> set[str]:
    return {
        f"{module.__name__}.{name}"
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, types.FunctionType)
        and value.__module__.startswith(module.__name__)
    }


def test_every_public_service_has_a_case() -> None:
    """A new service is added to CASES (or to NOT_AUDITED, with the reason it writes nothing)."""
    public = set().union(
        *(
            _public_functions(m)
            for m in (core.services, exceptions.services, metering.services, billing.services)
        )
    )
    prefixes = {
        "core_": "core.services.",
        "exceptions_": "exceptions.services.",
        "metering_": "metering.services.",
        "billing_": "billing.services.",
    }
    covered = set()
    for case in CASES:
        app, _, rest = case.partition("_")
        module = prefixes[f"{app}_"]
        # a case is named <app>_<service>[_<variant>]: the longest public name it starts with
        names = [p for p in public if p.startswith(module) and rest.startswith(p[len(module) :])]
        assert names, f"{case} names no public service"
        covered.add(max(names, key=len))
    missing = sorted(public - covered - set(NOT_AUDITED))
    assert not missing, f"Public services without an audit case: {missing}"
    stale = sorted(set(NOT_AUDITED) - public)
    assert not stale, f"NOT_AUDITED names functions that are gone: {stale}"
