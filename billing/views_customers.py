"""Customer, receivables, run history and the history tabs of billing's other objects
(issue 15, items 4, 5 and 8). Every role that reads billing may open them; none changes
anything here.
"""

from __future__ import annotations

from datetime import date

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from billing import histories, receivables, selectors
from billing.models import BillingRun, Contract, Invoice, PricePlan
from billing.periods import local_date_of
from billing.views import VIEWERS
from billing.views_plans import EDITORS, READERS
from core.models import Customer, LegalEntity
from core.roles import has_role, role_required
from exceptions.history import HistoryRow
from metering.for_billing import UsageEvent


@role_required(*VIEWERS)
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer.objects.select_related("legal_entity"), pk=pk)
    now = timezone.now()
    overview = receivables.customer_overview(customer=customer, now=now)
    today = timezone.localdate()
    return render(
        request,
        "billing/customer_detail.html",
        {
            "c": overview,
            "customer": customer,
            "today": today,
            # (document, days past due): `due` is the database's annotation (receivables)
            "documents": [
                (d, receivables.days_past_due(d.due, today))  # type: ignore[attr-defined]
                for d in overview.documents
            ],
        },
    )


def _history(
    request: HttpRequest, *, title: str, back: str, rows: list[HistoryRow], hint: str
) -> HttpResponse:
    return render(
        request,
        "billing/object_history.html",
        {"title": title, "back": back, "rows": rows, "hint": hint},
    )


@role_required(*VIEWERS)
def customer_history(request: HttpRequest, pk: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=pk)
    return _history(
        request,
        title=f"customer {customer.name} ({customer.code})",
        back=f"/billing/customers/{customer.pk}/",
        rows=histories.customer_history(customer=customer),
        hint="Entries on the customer itself, and on its contracts, identity mappings, "
        "documents and exception cases.",
    )


@role_required(*VIEWERS)
def contract_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A contract: its customer, the plan version and overrides in force today, its own
    overrides and amendments as tables, its documents; links to its history and editor."""
    try:
        contract = Contract.objects.select_related("legal_entity").get(pk=pk)
    except Contract.DoesNotExist:
        raise Http404(f"No contract {pk}.") from None
    today = local_date_of(ts=timezone.now(), tz=contract.legal_entity.timezone)
    return render(
        request,
        "billing/contract_detail.html",
        {
            "page": selectors.contract_page(pk=pk, today=today),
            "can_edit": has_role(request.user, *EDITORS),
            "can_list": has_role(request.user, *READERS),
        },
    )


@role_required(*VIEWERS)
def plan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A price plan: each version's components and tiers as a table, the contracts on it."""
    try:
        page = selectors.plan_page(pk=pk)
    except PricePlan.DoesNotExist:
        raise Http404(f"No price plan {pk}.") from None
    return render(
        request,
        "billing/plan_detail.html",
        {
            "page": page,
            "can_edit": has_role(request.user, *EDITORS),
            "can_list": has_role(request.user, *READERS),
        },
    )


@role_required(*VIEWERS)
def contract_history(request: HttpRequest, pk: int) -> HttpResponse:
    contract = get_object_or_404(Contract.objects.select_related("customer"), pk=pk)
    return _history(
        request,
        title=f"contract {contract.code}",
        back=f"/billing/contracts/{contract.pk}/",
        rows=histories.contract_history(contract=contract),
        hint="Entries on the contract (created, amended, ended, edited), its amendments, the "
        "billing runs that drafted its invoices, and those documents.",
    )


@role_required(*VIEWERS)
def plan_history(request: HttpRequest, pk: int) -> HttpResponse:
    plan = get_object_or_404(PricePlan, pk=pk)
    return _history(
        request,
        title=f"price plan {plan.code}",
        back=f"/billing/plans/{plan.pk}/",
        rows=histories.price_plan_history(plan=plan),
        hint="Entries on the plan (created, versions added, edited), its versions, and the "
        "contracts created on it or amended to it.",
    )


@role_required(*VIEWERS)
def event_history(request: HttpRequest, seq: int) -> HttpResponse:
    event = UsageEvent.objects.filter(seq=seq).select_related("metric", "customer").first()
    if event is None:
        raise Http404(f"No usage event with seq {seq}.")
    return render(
        request,
        "billing/event_history.html",
        {
            "event": event,
            "title": f"usage event #{event.seq}",
            "back": f"/billing/events/?seq={event.seq}",
            "rows": histories.event_history(event=event),
            "hint": "Usage is audited per ingest batch, not event by event. This is what the "
            "trail says about this event: its release from hold, the usage summaries that "
            "counted it, the documents it was billed on and cases about it.",
        },
    )


def _as_of(raw: str) -> tuple[date, str]:
    if not raw.strip():
        return timezone.localdate(), ""
    try:
        return date.fromisoformat(raw.strip()), ""
    except ValueError:
        return timezone.localdate(), f"As of: '{raw}' is not a date (YYYY-MM-DD); showing today."


@role_required(*VIEWERS)
def receivables_page(request: HttpRequest) -> HttpResponse:
    """Aged receivables of one legal entity on a date, per customer and currency."""
    entities = list(LegalEntity.objects.order_by("code"))
    code = request.GET.get("legal_entity", "") or (entities[0].code if entities else "")
    entity = next((e for e in entities if e.code == code), None)
    if code and entity is None:
        raise Http404(f"No legal entity {code!r}.")
    as_of, error = _as_of(request.GET.get("as_of", ""))
    return render(
        request,
        "billing/receivables.html",
        {
            "entities": entities,
            "entity": entity,
            "as_of": as_of,
            "error": error,
            "ageing": receivables.ageing(entity=entity, as_of=as_of) if entity else None,
            "buckets": [(key, label) for key, label, *_ in receivables.BUCKETS],
        },
    )


def _duration(run: BillingRun) -> str:
    """How long the run took ("1 min 5 s"), "running" or "" when it has not started."""
    if run.started_at is None:
        return ""
    if run.finished_at is None:
        return "running"
    seconds = int((run.finished_at - run.started_at).total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


@role_required(*VIEWERS)
def run_history(request: HttpRequest) -> HttpResponse:
    """Every billing run, newest first: status, counts, duration, errors."""
    runs = selectors.billing_runs(legal_entity=request.GET.get("legal_entity", ""))[:200]
    return render(
        request,
        "billing/run_history.html",
        {
            "runs": [(r, _duration(r)) for r in runs],
            "entities": LegalEntity.objects.order_by("code"),
            "filters": request.GET,
        },
    )


@role_required(*VIEWERS)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One run attempt: its figures, the other attempts of its month, the documents it drafted
    and its history (created, queued, started, failed or finished, its draft batches)."""
    run = get_object_or_404(selectors.billing_runs(), pk=pk)
    docs = Invoice.objects.filter(billing_run=run).select_related("customer", "currency")
    return render(
        request,
        "billing/run_detail.html",
        {
            "run": run,
            "attempts": BillingRun.objects.filter(
                legal_entity_id=run.legal_entity_id, period_start=run.period_start
            ).order_by("attempt"),
            "documents": docs.order_by("id")[:500],
            "count": docs.count(),
            "duration": _duration(run),
            "rows": histories.run_history(run=run),
        },
    )
