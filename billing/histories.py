"""History tabs of a customer, a contract, a price plan and a usage event (issue 15, item 4).

Each names where its audit entries are (exceptions.history.Source) and leaves reading and
showing them to `exceptions.history.history`, like the invoice's `selectors.invoice_history`.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from billing.audit_actions import BillingAuditAction
from billing.models import BillingRun, Contract, Invoice, PricePlan
from core.models import Customer
from exceptions.history import HistoryRow, Shown, Source, history, own, related
from exceptions.models import AuditEntry, ExceptionCase
from metering.for_billing import (
    CustomerMapping,
    UsageEvent,
    event_supersessions,
    summaries_for_event,
)

INVOICE = "billing.invoice"
CONTRACT = "billing.contract"
CASE = "exceptions.exceptioncase"
MAPPING = "metering.customermapping"


def _documents(qs: QuerySet[Invoice]) -> dict[str, str]:
    """id -> "invoice US-INV-2026-000001" (or "invoice draft #7") of some documents."""
    return {
        str(pk): f"{kind.replace('_', ' ')} {number or f'draft #{pk}'}"
        for pk, kind, number in qs.values_list("pk", "kind", "number")
    }


def document_batches(labels: dict[str, str]) -> Source:
    """The batch entries on documents that name some of `labels` (id -> label): a batch
    finalize (its `numbers`) or a re-rating (totals by id), shown for those documents only."""
    ids = list(labels)

    def read(e: AuditEntry) -> Shown | None:
        after = e.after or {}
        numbers = after.get("numbers") or {}
        ours = [pk for pk in ids if pk in numbers or pk in after]
        if not ours:
            return None
        shown = {k: v for k, v in after.items() if k != "numbers" and k not in after_ids(after)}
        for pk in ours:
            field = "number" if len(ids) == 1 else f"number #{pk}"
            if pk in numbers:
                shown[field] = numbers[pk]
            else:
                shown["total" if len(ids) == 1 else f"total #{pk}"] = after[pk]
        return Shown(via=f"batch: {e.object_repr}", before=e.before, after=shown)

    if not ids:
        return Source(Q(pk__in=[]), read)  # no documents: no batch names them
    return Source(
        Q(object_type=INVOICE, after__numbers__has_any_keys=ids)
        | Q(object_type=INVOICE, after__has_any_keys=ids),
        read,
    )


def after_ids(after: dict[str, object]) -> set[str]:
    """The keys of a re-rating entry's `after` that are document ids (its totals by id)."""
    return {k for k in after if k.isdigit()}


def drafted_by_runs(run_ids: list[int], *, key: str, wanted: int) -> Source:
    """The runs' draft batches whose `after[key]` lists `wanted` (the batch drafted it)."""

    def read(e: AuditEntry) -> Shown | None:
        if wanted not in (e.after or {}).get(key, []):
            return None
        return Shown(via=f"billing run {e.object_repr}", before=None, after={"drafted": "yes"})

    return Source(
        Q(
            object_type="billing.billingrun",
            object_id__in=[str(i) for i in run_ids],
            action=BillingAuditAction.RUN_DRAFTS_CREATE,
        ),
        read,
    )


def run_history(*, run: BillingRun) -> list[HistoryRow]:
    """The run's entries: created, queued, each start, failure and finish, its draft batches."""
    return history([own("billing.billingrun", run.pk)])


def customer_history(*, customer: Customer) -> list[HistoryRow]:
    """The customer's own entries (created, edited in the admin), and those of its contracts,
    identity mappings (a mapping made, held events released), documents and exception cases."""
    contracts = {
        str(c.pk): f"contract {c.code}" for c in Contract.objects.filter(customer=customer)
    }
    mappings = {
        str(m.pk): f"mapping {m.source}:{m.customer_ref}"
        for m in CustomerMapping.objects.filter(customer=customer)
    }
    cases = {
        str(pk): f"case #{pk} {title}"
        for pk, title in ExceptionCase.objects.filter(customer=customer).values_list("pk", "title")
    }
    docs = _documents(Invoice.objects.filter(customer=customer))
    return history(
        [
            own("core.customer", customer.pk),
            related(CONTRACT, contracts),
            related(MAPPING, mappings),
            document_batches(docs),
            related(INVOICE, docs),
            related(CASE, cases),
        ]
    )


def contract_history(*, contract: Contract) -> list[HistoryRow]:
    """The contract's entries (created, amended, ended, edited), its amendments' admin edits,
    the billing runs' batches that drafted its invoices, and its documents' own entries."""
    docs = Invoice.objects.filter(contract=contract)
    runs = sorted({r for r in docs.values_list("billing_run_id", flat=True) if r is not None})
    amendments = {
        str(pk): f"amendment from {day}"
        for pk, day in contract.amendments.values_list("pk", "effective_from")
    }
    labels = _documents(docs)
    return history(
        [
            own(CONTRACT, contract.pk),
            related("billing.contractamendment", amendments),
            drafted_by_runs(runs, key="contract_ids", wanted=contract.pk),
            document_batches(labels),
            related(INVOICE, labels),
        ]
    )


def price_plan_history(*, plan: PricePlan) -> list[HistoryRow]:
    """The plan's entries (created, versions added, edited), its versions' admin edits, and the
    contracts put on it (created or amended to it)."""
    versions = {str(pk): f"version {n}" for pk, n in plan.versions.values_list("pk", "version")}
    on_plan = Contract.objects.filter(Q(plan=plan) | Q(amendments__plan=plan)).distinct()
    contracts = {str(c.pk): f"contract {c.code}" for c in on_plan}
    return history(
        [
            own("billing.priceplan", plan.pk),
            related("billing.priceplanversion", versions),
            related(
                CONTRACT,
                contracts,
                actions=[BillingAuditAction.CONTRACT_CREATE, BillingAuditAction.CONTRACT_AMEND],
            ),
        ]
    )


def event_history(*, event: UsageEvent) -> list[HistoryRow]:
    """What the trail says about one accepted event. Events are audited per ingest batch, not
    one by one, so this is: its release from hold (the mapping's release entry whose seq range
    holds it), the usage summaries that counted it (their window's entries whose watermark
    reached it), the documents it was billed on, exception cases about it, and its supersession
    (decision 51: superseded by, or replacing, another version)."""
    seq = event.seq
    mappings = {
        str(pk): f"mapping {src}:{ref}"
        for pk, src, ref in CustomerMapping.objects.filter(
            source=event.source, customer_ref=event.customer_ref
        ).values_list("pk", "source", "customer_ref")
    }

    def released(e: AuditEntry) -> Shown | None:
        after = e.after or {}
        if not (int(after.get("seq_from", 0)) <= seq <= int(after.get("seq_to", -1))):
            return None
        return Shown(via=mappings.get(e.object_id, e.object_repr), before=None, after=after)

    summaries = list(summaries_for_event(event=event))
    windows = sorted(
        {f"{s.period_start:%Y%m%dT%H%M%S}-{s.period_end:%Y%m%dT%H%M%S}" for s in summaries}
    )

    def counted(e: AuditEntry) -> Shown | None:
        if int((e.after or {}).get("watermark_seq", 0)) < seq:
            return None  # summarized before this event arrived
        return Shown(via=e.object_repr, before=e.before, after=e.after)

    docs = Invoice.objects.filter(lines__usage_summary__in=[s.pk for s in summaries]).distinct()
    cases = {
        str(pk): f"case #{pk} {title}"
        for pk, title in ExceptionCase.objects.filter(
            source_type="metering.usageevent", source_id=str(seq)
        ).values_list("pk", "title")
    }
    superseded = {
        str(s.pk): f"superseded by event #{s.replacement_seq}"
        if s.original_seq == seq
        else f"replaces event #{s.original_seq}"
        for s in event_supersessions(seq=seq)
    }
    return history(
        [
            Source(
                Q(object_type=MAPPING, object_id__in=list(mappings), action="usage.release"),
                released,
            ),
            Source(
                Q(
                    object_type="metering.usagesummary",
                    object_id__in=windows,
                    action="usage.summarize",
                ),
                counted,
            ),
            related(INVOICE, _documents(docs)),
            related(CASE, cases),
            related("metering.eventsupersession", superseded),
        ]
    )
