"""ERP pages: the outbox (postings, attempts, replay) and reconciliation per entity and month.

Who may do what (checked here, on the server):
  view postings, reconciliations   finance_clerk, finance_approver, integration_admin, auditor
  replay a posting                 finance_approver, integration_admin
  run a reconciliation             finance_clerk, finance_approver, integration_admin
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing.periods import parse_period
from core.actors import Actor
from core.errors import AppError
from core.form_input import FormInputError, check_id, form_text
from core.models import LegalEntity
from core.roles import (
    AUDITOR,
    FINANCE_APPROVER,
    FINANCE_CLERK,
    INTEGRATION_ADMIN,
    has_role,
    role_required,
)
from erp_sync import selectors
from erp_sync.models import DocumentType, Posting, PostingStatus, ReconciliationRun
from erp_sync.services import posting_replay
from erp_sync.services.reconciliation import reconcile

VIEWERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)
REPLAYERS = (FINANCE_APPROVER, INTEGRATION_ADMIN)
RECONCILERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN)
PAGE_SIZE = 50


@role_required(*VIEWERS)
def posting_list(request: HttpRequest) -> HttpResponse:
    q = request.GET
    qs = selectors.postings(
        status=q.get("status", ""),
        document_type=q.get("document_type", ""),
        customer=q.get("customer", "").strip(),
        legal_entity=q.get("legal_entity", ""),
    ).order_by("-updated_at", "-id")
    page = Paginator(qs, PAGE_SIZE).get_page(q.get("page"))
    params = q.copy()
    params.pop("page", None)
    return render(
        request,
        "erp_sync/posting_list.html",
        {
            "page": page,
            "filters": q,
            "query": params.urlencode(),
            "statuses": PostingStatus.choices,
            "document_types": DocumentType.choices,
            "entities": LegalEntity.objects.order_by("code"),
            "counts": selectors.status_counts(),
            "connections": selectors.connections(),
        },
    )


@role_required(*VIEWERS)
def posting_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        posting = selectors.posting_detail(pk=pk)
    except Posting.DoesNotExist:
        from django.http import Http404

        raise Http404("No such posting") from None
    return render(
        request,
        "erp_sync/posting_detail.html",
        {
            "posting": posting,
            "can_replay": has_role(request.user, *REPLAYERS)
            and posting.status in (PostingStatus.FAILED, PostingStatus.DEAD, PostingStatus.HELD),
        },
    )


@require_POST
@role_required(*REPLAYERS)
def posting_replay_view(request: HttpRequest, pk: int) -> HttpResponse:
    posting = get_object_or_404(Posting, pk=pk)
    reason = form_text(request.POST, "reason", label="Reason")
    try:
        posting_replay(
            posting=posting,
            actor=Actor.for_user(request.user),
            reason=reason,
        )
        messages.success(request, f"{posting.external_id} will be sent again by the next drain.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("erp_sync:posting", pk=pk)


@role_required(*VIEWERS)
def reconciliation(request: HttpRequest) -> HttpResponse:
    q = request.GET
    runs = selectors.reconciliation_runs(legal_entity=q.get("legal_entity", ""))
    run = None
    if q.get("run"):
        run = get_object_or_404(ReconciliationRun, pk=check_id("run", q["run"], label="Run"))
    elif runs:
        run = runs[0]
    return render(
        request,
        "erp_sync/reconciliation.html",
        {
            "runs": runs,
            "run": run,
            "entities": LegalEntity.objects.order_by("code"),
            "can_run": has_role(request.user, *RECONCILERS),
            "filters": q,
        },
    )


@require_POST
@role_required(*RECONCILERS)
def reconciliation_run(request: HttpRequest) -> HttpResponse:
    code = form_text(request.POST, "entity", label="Legal entity", max_length=64)
    period = form_text(request.POST, "period", label="Period", max_length=7)
    entity = get_object_or_404(LegalEntity, code=code)
    try:
        month = parse_period(period)
    except ValueError as exc:
        raise FormInputError("period", f"Period: {exc}.") from None
    run = reconcile(
        legal_entity=entity, start=month.start, end=month.end, actor=Actor.for_user(request.user)
    )
    if run.matched:
        messages.success(request, f"{entity.code} {month.start:%Y-%m} reconciles: no difference.")
    else:
        messages.warning(
            request, f"{len(run.mismatches)} difference(s); each is a case in the exception queue."
        )
    return redirect(f"{reverse('erp_sync:reconciliation')}?run={run.pk}")
