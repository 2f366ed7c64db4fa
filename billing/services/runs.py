"""Billing runs: request, start, execute (rate every contract period of a month into drafts)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from billing.audit_actions import BillingAuditAction
from billing.error_codes import BillingErrorCode
from billing.drafting import draft_period, usage_windows
from billing.models import (
    BillingRun,
    Contract,
    DocumentKind,
    Invoice,
    RUN_IN_PROGRESS_STATUSES,
    RunStatus,
)
from billing.money import minor_unit
from billing.periods import Period, local_date_of, parse_period, period_bounds_utc
from billing.rating import RatingError
from billing.services._shared import (
    RUN_BATCH_SIZE,
    RUN_STALE_AFTER,
    chunks,
    claim_action_key,
    entity_rounding,
)
from billing.services.contracts import contract_terms, plan_cache
from billing.services.drafts import (
    ProgressFn,
    apply_prepaid,
    draft_invoice,
    NewDocument,
    open_rating_failed_case,
    summarize_windows,
    SummaryIndex,
    tax_context_for,
    compute_taxes,
    write_documents,
)
from billing.services.late_usage import late_usage_corrections
from billing.tax import tax_engine
from billing.terms import ContractTerms, TermsError, period_ending_in
from core.actors import Actor
from core.errors import AppError, Conflict
from core.models import LegalEntity
from exceptions.models import ExceptionCase
from exceptions.services import audit_record, case_open_or_update

# --------------------------------------------------------------------------- billing runs


def month_ready_at(*, legal_entity: LegalEntity, month: Period) -> datetime:
    """When a month may be billed: its end in the entity's time zone plus the grace window."""
    _, end = period_bounds_utc(period=month, tz=legal_entity.timezone)
    return end + timedelta(hours=settings.LEDGERLINE["BILLING_GRACE_HOURS"])


def billing_run_request(
    *, legal_entity: LegalEntity, month: Period, actor: Actor, now: datetime | None = None
) -> BillingRun:
    """A new run attempt of `legal_entity` for `month` (pending), refused before the grace window
    passed and while another attempt of that month is pending or running (decision 52).

    An attempt still pending or running `RUN_STALE_AFTER` (by the wall clock) after it was
    queued or started is taken to have died: it is marked failed ("abandoned") and the new attempt replaces it.
    Two requests at the same moment meet at the partial unique index: the second is refused.
    """
    now = now or timezone.now()
    ready = month_ready_at(legal_entity=legal_entity, month=month)
    if now < ready:
        raise AppError(
            f"{month.start:%Y-%m} of {legal_entity.code} closes for billing at {ready:%Y-%m-%d %H:%M} UTC "
            f"({settings.LEDGERLINE['BILLING_GRACE_HOURS']} h grace for late usage).",
            code=BillingErrorCode.PERIOD_NOT_CLOSED,
            extra={"ready_at": ready.isoformat()},
        )
    with transaction.atomic():
        attempts = BillingRun.objects.filter(legal_entity=legal_entity, period_start=month.start)
        current = attempts.select_for_update().filter(status__in=RUN_IN_PROGRESS_STATUSES).first()
        if current is not None:
            # staleness on the wall clock (`now` may be a chosen day, for the grace window)
            clock = timezone.now()
            if clock - (current.started_at or current.created_at) < RUN_STALE_AFTER:
                raise _in_progress(current)
            _abandon(current, actor=actor, now=clock)
        last = attempts.aggregate(n=Max("attempt"))["n"] or 0
        try:
            with transaction.atomic():
                run = BillingRun.objects.create(
                    legal_entity=legal_entity,
                    period_start=month.start,
                    period_end=month.end,
                    attempt=last + 1,
                    requested_by=actor.label,
                )
        except IntegrityError:
            # another request of this month committed its attempt meanwhile
            other = attempts.filter(status__in=RUN_IN_PROGRESS_STATUSES).first()
            raise _in_progress(other, legal_entity=legal_entity, month=month) from None
        audit_record(
            actor=actor,
            action=BillingAuditAction.RUN_CREATE,
            obj=run,
            after={"legal_entity": legal_entity.code, "period": run.label, "attempt": run.attempt},
        )
    return run


def _in_progress(
    run: BillingRun | None,
    *,
    legal_entity: LegalEntity | None = None,
    month: Period | None = None,
) -> Conflict:
    """The refusal of a second attempt while one is pending or running."""
    if run is None:  # the other attempt took the same number and has ended already
        assert legal_entity is not None and month is not None
        return Conflict(
            f"Another billing run of {legal_entity.code} for {month.start:%Y-%m} was started at "
            "the same moment; look at the run history before running the month again.",
            code=BillingErrorCode.RUN_IN_PROGRESS,
        )
    since = run.started_at or run.created_at
    state = "running since" if run.status == RunStatus.RUNNING else "queued at"
    return Conflict(
        f"Billing run #{run.pk} of {run.legal_entity.code} for {run.label} (attempt "
        f"{run.attempt}) is {state} {since:%Y-%m-%d %H:%M} UTC; wait for it to finish before "
        "running the month again.",
        code=BillingErrorCode.RUN_IN_PROGRESS,
        extra={"run_id": run.pk},
    )


def _abandon(run: BillingRun, *, actor: Actor, now: datetime) -> None:
    """Mark an attempt that stopped reporting as failed, so a new attempt may start."""
    before = run.status
    run.status, run.finished_at = RunStatus.FAILED, now
    run.error = (
        f"Abandoned: still {before} {RUN_STALE_AFTER.total_seconds() / 3600:g} h after it was "
        "queued or started "
        "(its worker is taken to have died); a new attempt replaced it."
    )
    run.save(update_fields=["status", "finished_at", "error"])
    audit_record(
        actor=actor,
        action=BillingAuditAction.RUN_FAIL,
        obj=run,
        before={"status": before},
        after={"status": RunStatus.FAILED, "error": run.error},
        reason="abandoned",
    )


def billing_run_start(
    *,
    legal_entity: LegalEntity,
    month: Period,
    actor: Actor,
    idempotency_key: str | None = None,
) -> BillingRun:
    """Request a new attempt and hand it to the task queue once the request commits (the UI button).
    `idempotency_key` (the form's one-time token): a second submit is told, nothing queued."""
    with transaction.atomic():
        claim_action_key(
            key=idempotency_key,
            action="run_start",
            actor=actor,
            subject=f"billing run {legal_entity.code} {month.start:%Y-%m}",
        )
        run = billing_run_request(legal_entity=legal_entity, month=month, actor=actor)
        audit_record(
            actor=actor,
            action=BillingAuditAction.RUN_ENQUEUE,
            obj=run,
            after={"status": RunStatus.PENDING},
        )

        def enqueue() -> None:
            from django_q.tasks import async_task

            async_task(
                "billing.tasks.billing_run_task",
                run.pk,
                actor.label,
                task_name=f"billing-run-{run.pk}",
            )

        transaction.on_commit(enqueue)
    return run


def billing_runs_bill_due(*, actor: Actor, now: datetime | None = None) -> list[int]:
    """Bill last month of every legal entity whose grace window has passed (the hourly schedule).

    An entity's month is skipped while an attempt of it is pending or running and once one
    is done, so calling this again (every hour, or twice at once) bills nothing twice; a
    month whose last attempt failed gets a new attempt each hour. Returns the ids of the
    attempts executed.
    """
    now = now or timezone.now()
    done: list[int] = []
    for entity in LegalEntity.objects.all():
        today = local_date_of(ts=now, tz=entity.timezone)
        last_month = today.replace(day=1) - timedelta(days=1)
        month = parse_period(f"{last_month:%Y-%m}")
        if now < month_ready_at(legal_entity=entity, month=month):
            continue
        attempts = BillingRun.objects.filter(legal_entity=entity, period_start=month.start)
        if attempts.filter(status=RunStatus.DONE).exists():
            continue
        try:
            run = billing_run_request(legal_entity=entity, month=month, actor=actor, now=now)
        except Conflict:
            continue  # an attempt of this month is pending or running
        billing_run_execute(run_id=run.pk, actor=actor)
        done.append(run.pk)
    return done


@dataclass
class RunOutcome:
    """What ONE execution of a run did (the run's own counters add up over its executions)."""

    drafted: int = 0
    corrected: int = 0
    failed_cases: list[ExceptionCase] = field(default_factory=list)


@dataclass
class _Todo:
    contract: Contract
    terms: ContractTerms
    period: Period


def billing_run_execute(
    *, run_id: int, actor: Actor, progress: ProgressFn | None = None, now: datetime | None = None
) -> BillingRun:
    """Rate every contract period of the run's month into draft invoices, then late-usage corrections.

    Executes a pending attempt once: an attempt that is running is refused (RUN_IN_PROGRESS),
    one that has ended too (RUN_ENDED: run the month again, `billing_run_retry`, for a new
    attempt). A new attempt skips the contracts already invoiced for the period by earlier
    attempts (and the database refuses a second invoice for a contract period).
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = BillingRun.objects.select_for_update().select_related("legal_entity").get(pk=run_id)
        if run.status == RunStatus.RUNNING:
            raise _in_progress(run)
        if run.status != RunStatus.PENDING:
            raise Conflict(
                f"Billing run #{run.pk} of {run.legal_entity.code} for {run.label} has ended "
                f"({run.get_status_display().lower()}); run the month again for a new attempt.",
                code=BillingErrorCode.RUN_ENDED,
                extra={"run_id": run.pk, "status": run.status},
            )
        before = run.status
        run.status, run.started_at, run.finished_at, run.error = RunStatus.RUNNING, now, None, ""
        run.processed = 0
        run.save(update_fields=["status", "started_at", "finished_at", "error", "processed"])
        audit_record(
            actor=actor,
            action=BillingAuditAction.RUN_START,
            obj=run,
            before={"status": before},
            after={"status": RunStatus.RUNNING},
        )
    try:
        outcome = _run_month(run, actor=actor, progress=progress)
    except Exception as exc:
        with transaction.atomic():
            BillingRun.objects.filter(pk=run.pk).update(
                status=RunStatus.FAILED, error=str(exc)[:4000], finished_at=timezone.now()
            )
            run.refresh_from_db()
            audit_record(
                actor=actor,
                action=BillingAuditAction.RUN_FAIL,
                obj=run,
                before={"status": RunStatus.RUNNING},
                after={"status": RunStatus.FAILED, "error": str(exc)[:500]},
            )
        case_open_or_update(
            kind="billing_run_failed",
            # one case per entity and month: a failing re-run counts again on it (decision 52)
            fingerprint=f"billing:run:{run.legal_entity_id}:{run.label}",
            title=f"Billing run {run.label} of {run.legal_entity.code} failed",
            actor=actor,
            error_message=str(exc)[:2000],
            source=run,
            legal_entity_id=run.legal_entity_id,
        )
        raise
    with transaction.atomic():
        BillingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.DONE, finished_at=timezone.now()
        )
        run.refresh_from_db()
        audit_record(
            actor=actor,
            action=BillingAuditAction.RUN_FINISH,
            obj=run,
            before={"status": RunStatus.RUNNING},
            after={
                "status": RunStatus.DONE,
                "invoices_created": outcome.drafted,
                "adjustments_created": outcome.corrected,
                "failed_case_ids": [c.pk for c in outcome.failed_cases],
            },
        )
    run.outcome = outcome  # this execution's counts, not stored
    return run


def billing_run_retry(*, run_id: int, actor: Actor) -> BillingRun:
    """Run the month of an ended attempt again: a new attempt, executed now (case retry, admin)."""
    run = BillingRun.objects.select_related("legal_entity").get(pk=run_id)
    month = Period(start=run.period_start, end=run.period_end)
    again = billing_run_request(legal_entity=run.legal_entity, month=month, actor=actor)
    return billing_run_execute(run_id=again.pk, actor=actor)


def _run_month(run: BillingRun, *, actor: Actor, progress: ProgressFn | None) -> RunOutcome:
    entity = run.legal_entity
    tz = entity.timezone
    month = Period(start=run.period_start, end=run.period_end)
    rounding = entity_rounding(entity)
    contracts = list(
        Contract.objects.filter(legal_entity=entity, start_date__lt=month.end)
        .filter(Q(end_date__isnull=True) | Q(end_date__gt=month.start - timedelta(days=366)))
        .select_related("customer", "currency")
        .order_by("pk")
    )
    terms = contract_terms(contracts)
    plans = plan_cache({ch.plan_id for t in terms.values() for ch in t.changes})
    done = set(
        Invoice.objects.filter(
            legal_entity=entity,
            kind=DocumentKind.INVOICE,
            period_end__gt=month.start,
            period_end__lte=month.end,
        ).values_list("contract_id", "period_start", "period_end")
    )
    todo: list[_Todo] = []
    for c in contracts:
        t = terms[c.pk]
        period = period_ending_in(terms=t, month=month)
        if period is None or t.active(period) is None or (c.pk, period.start, period.end) in done:
            continue
        todo.append(_Todo(contract=c, terms=t, period=period))

    # usage: one summarize call per distinct window, for the customers that need it
    needs: dict[tuple[datetime, datetime], set[int]] = defaultdict(set)
    failed: set[int] = set()
    cases: list[ExceptionCase] = []
    for item in todo:
        try:
            for window in usage_windows(terms=item.terms, period=item.period, tz=tz, plans=plans):
                needs[window].add(item.contract.customer_id)
        except TermsError as exc:
            cases.append(
                open_rating_failed_case(
                    run=run, contract=item.contract, period=item.period, exc=exc, actor=actor
                )
            )
            failed.add(item.contract.pk)
    index = SummaryIndex()
    summarize_windows(needs, index, actor)
    BillingRun.objects.filter(pk=run.pk).update(total=len(todo))
    if progress:
        progress(0, len(todo))

    engine = tax_engine()
    created = 0
    processed = 0
    for batch in chunks(todo, RUN_BATCH_SIZE):
        docs: list[NewDocument] = []
        for item in batch:
            if item.contract.pk in failed:
                continue
            c = item.contract
            try:
                draft = draft_period(
                    terms=item.terms,
                    period=item.period,
                    tz=tz,
                    plans=plans,
                    usage=index,
                    minor_units=c.currency.minor_units,
                    rounding=rounding,
                    prepaid_balance=c.prepaid_balance.quantize(minor_unit(c.currency.minor_units)),
                )
            except (RatingError, TermsError) as exc:
                cases.append(
                    open_rating_failed_case(
                        run=run, contract=c, period=item.period, exc=exc, actor=actor
                    )
                )
                continue
            context = tax_context_for(
                c.customer,
                legal_entity_id=entity.pk,
                tax_date=item.period.end - timedelta(days=1),
                minor_units=c.currency.minor_units,
                rounding=rounding,
            )
            taxes = compute_taxes(engine, context, draft.lines)
            docs.append(
                NewDocument(
                    invoice=draft_invoice(
                        kind=DocumentKind.INVOICE,
                        contract=c,
                        period=item.period,
                        draft=draft,
                        taxes=taxes,
                        rounding=rounding,
                        run=run,
                    ),
                    lines=draft.lines,
                    taxes=taxes,
                )
            )
        processed += len(batch)
        with transaction.atomic():
            invoices = write_documents(docs)
            apply_prepaid(docs)
            BillingRun.objects.filter(pk=run.pk).update(
                processed=processed, invoices_created=created + len(docs)
            )
            if invoices:
                audit_record(
                    actor=actor,
                    action=BillingAuditAction.RUN_DRAFTS_CREATE,
                    obj=run,
                    after={
                        "invoice_ids": [i.pk for i in invoices],
                        "contract_ids": [i.contract_id for i in invoices],
                    },
                )
        created += len(docs)
        if progress:
            progress(processed, len(todo))

    adjustments = late_usage_corrections(
        run, month=month, rounding=rounding, actor=actor, engine=engine
    )
    return RunOutcome(drafted=created, corrected=adjustments, failed_cases=cases)
