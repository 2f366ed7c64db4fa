"""Queue and case pages (server-rendered; htmx swaps the result list in place).

Who may see: finance_clerk, finance_approver, integration_admin, auditor.
Who may act: services.ACTION_ROLES decides, on the server, for every POST.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django_htmx.middleware import HtmxDetails
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core.errors import AppError
from core.form_input import (
    FormInputError,
    form_amount,
    form_amounts_by_id,
    form_id,
    form_ids,
    form_int,
    form_text,
    form_token,
)
from core.models import Customer, LegalEntity
from core.roles import AUDITOR, FINANCE_APPROVER, FINANCE_CLERK, INTEGRATION_ADMIN, role_required
from exceptions.models import CaseKind, ExceptionCase
from exceptions.policies import POLICY_FIELDS, policies_by_kind
from exceptions.templatetags.queue import money_text
from exceptions.workbench import dispatch, selectors, services
from exceptions.workbench.disputes import ADJUSTMENT_REASONS
from exceptions.workbench.filters import CaseFilter, filter_choices
from exceptions.workbench.services import Caller

VIEWERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)
#: Rows per page of the queue.
PAGE_SIZE = 50
CSV_COLUMNS = [
    "id",
    "kind",
    "status",
    "severity",
    "title",
    "legal_entity",
    "customer",
    "connection",
    "amount",
    "currency",
    "assignee",
    "occurrences",
    "opened_at",
    "last_seen_at",
    "due_at",
    "past_due",
    "error_code",
    "error_message",
    "source",
]


class KnownCountPaginator(Paginator[ExceptionCase]):
    """A paginator told the total (from the case counts, or counted up to a cap)."""

    def __init__(self, *args: Any, count: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known = count

    @property
    def count(self) -> int:
        return self._known


class _Echo:
    def write(self, value: str) -> str:
        return value


def _caller(request: HttpRequest) -> Caller:
    """The signed-in user as a caller (role_required lets no anonymous user this far)."""
    if not isinstance(request.user, AbstractBaseUser):
        raise PermissionDenied("Sign in first.")
    return Caller.for_user(request.user)


def _csv_rows(qs: QuerySet[ExceptionCase]) -> Iterator[str]:
    from django.utils import timezone

    now = timezone.now()
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for c in qs.iterator(chunk_size=2000):
        yield writer.writerow(
            [
                c.pk,
                c.kind,
                c.status,
                c.severity,
                c.title,
                c.legal_entity.code if c.legal_entity else "",
                c.customer.code if c.customer else "",
                c.connection_ref,
                c.amount_at_stake if c.amount_at_stake is not None else "",
                c.currency_id or "",
                c.assignee.get_username() if c.assignee else "",
                c.occurrence_count,
                c.first_seen_at.isoformat(),
                c.last_seen_at.isoformat(),
                c.due_at.isoformat() if c.due_at else "",
                "yes" if c.is_past_due(now) else "",
                c.error_code,
                c.error_message,
                f"{c.source_type}:{c.source_id}" if c.source_type else "",
            ]
        )


@role_required(*VIEWERS)
def queue(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    caller = _caller(request)
    filters = CaseFilter(request.GET, queryset=ExceptionCase.objects.all(), user=request.user)
    qs = selectors.queue_rows(filters.qs)
    if request.GET.get("format") == "csv":
        response = StreamingHttpResponse(_csv_rows(qs), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="exception-cases.csv"'
        return response
    statuses, kind = filters.simple_scope()
    counts = selectors.queue_counts(filters.qs, statuses=statuses, kind=kind)
    page = KnownCountPaginator(
        qs.only(*selectors.LIST_COLUMNS), PAGE_SIZE, count=counts.total
    ).get_page(request.GET.get("page"))
    rows = selectors.queue_page_rows(page.object_list, now=filters.now)
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "filters": filters,
        "page": page,
        "rows": rows,
        "counts": counts,
        "query": params.urlencode(),
        "caller": caller,
        "can_bulk": caller.may("assign"),
        "users": get_user_model().objects.filter(is_active=True).order_by("username"),
        "dismiss_reasons": services.DISMISS_REASONS,
        "kinds": CaseKind.choices,
        "choices": filter_choices(),
        # One reverse() for the page, not two per row.
        "case_url": reverse("exceptions:case", args=[0])[:-2],
    }
    # HtmxMiddleware sets `request.htmx`; HttpRequest's stubs do not declare it.
    htmx: HtmxDetails = request.htmx  # type: ignore[attr-defined]
    template = "exceptions/queue/_results.html" if htmx else "exceptions/queue/queue.html"
    return render(request, template, context)


@require_POST
@role_required(*VIEWERS)
def queue_bulk(request: HttpRequest) -> HttpResponse:
    caller = _caller(request)
    ids = form_ids(request.POST, "case", label="Each selected case")
    action = request.POST.get("action", "")
    comment = form_text(request.POST, "comment", label="Comment")
    back = request.POST.get("next") or reverse("exceptions:queue")
    if not ids:
        messages.error(request, "Select at least one case.")
        return redirect(back)
    try:
        if action == "assign":
            username = request.POST.get("assignee", "")
            user = get_user_model().objects.filter(username=username).first() if username else None
            result = services.cases_bulk_assign(case_ids=ids, assignee=user, caller=caller)
        elif action == "retry":
            result = services.cases_bulk_retry(case_ids=ids, caller=caller)
        elif action == "dismiss":
            result = services.cases_bulk_dismiss(
                case_ids=ids,
                reason_code=request.POST.get("reason_code", ""),
                comment=comment,
                caller=caller,
            )
        else:
            messages.error(request, "Choose an action.")
            return redirect(back)
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        return redirect(back)
    messages.success(request, f"{action.capitalize()}: {len(result.done)} case(s) done.")
    for case_id, why in sorted(result.skipped.items()):
        messages.warning(request, f"Case #{case_id} skipped: {why}")
    return redirect(back)


def _case_or_404(pk: int) -> ExceptionCase:
    try:
        return selectors.case_get(pk=pk)
    except ExceptionCase.DoesNotExist:
        raise Http404 from None


@role_required(*VIEWERS)
def case_detail(request: HttpRequest, pk: int) -> HttpResponse:
    case = _case_or_404(pk)
    if request.GET.get("format") == "csv":
        return _timeline_csv(case)
    caller = _caller(request)
    pending = selectors.pending_proposal(case=case)
    trace = selectors.case_trace(case=case)
    correcting = request.GET.get("correct", "")
    context = {
        "case": case,
        "caller": caller,
        "actions": selectors.case_actions(case=case, caller=caller),
        "trace": trace,
        "timeline": selectors.case_timeline(case=case),
        "comments": case.comments.all(),
        "pending": pending,
        "pending_diff": selectors.diff(pending.original, pending.proposed) if pending else [],
        "proposals": [
            (p, selectors.diff(p.original, p.proposed)) for p in case.proposals.all()[:20]
        ],
        "correction": dispatch.rejected_form(case, correcting) if correcting else None,
        "correction_reasons": services.CORRECTION_REASONS,
        "reversal_reasons": services.REVERSAL_REASONS,
        "dismiss_reasons": services.DISMISS_REASONS,
        "adjustment_reasons": ADJUSTMENT_REASONS,
        "users": get_user_model().objects.filter(is_active=True).order_by("username"),
        "customers": Customer.objects.select_related("legal_entity").order_by(
            "legal_entity__code", "code"
        )[:500],
        "four_eyes": selectors.four_eyes_needed(case=case, amount=case.amount_at_stake),
        "amount": money_text(case.amount_at_stake, case.currency),
        "explanation": selectors.explanation(case=case),
    }
    return render(request, "exceptions/queue/case.html", context)


def _timeline_csv(case: ExceptionCase) -> HttpResponse:
    """The case's audit timeline as CSV (times in UTC, ISO 8601)."""
    response = HttpResponse(content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="case-{case.pk}-timeline.csv"'
    writer = csv.writer(response)
    writer.writerow(["seq", "at", "actor", "action", "before", "after", "reason"])
    for e in selectors.case_timeline(case=case):
        writer.writerow(
            [
                e.seq,
                e.at.isoformat(),
                e.actor_label,
                e.action,
                json.dumps(e.before) if e.before is not None else "",
                json.dumps(e.after) if e.after is not None else "",
                e.reason,
            ]
        )
    return response


@require_POST
@role_required(*VIEWERS)
def case_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    case = _case_or_404(pk)
    caller = _caller(request)
    try:
        messages.success(
            request,
            dispatch.run(case=case, caller=caller, action=action, data=request.POST),
        )
    except FormInputError:
        raise  # the 400 page naming the field (core.middleware.FormInputErrorMiddleware)
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        if action == "correct" and exc.code != "case_stale":
            return redirect(
                reverse("exceptions:case", args=[pk])
                + f"?correct={request.POST.get('rejected_id', '')}"
            )
    return redirect("exceptions:case", pk=pk)


@role_required(*VIEWERS)
def policies(request: HttpRequest) -> HttpResponse:
    """Every kind's policy; an approver edits one per form."""
    caller = _caller(request)
    kinds = [k for k, _ in CaseKind.choices]
    if request.method == "POST":
        kind = form_text(request.POST, "kind", label="Kind", max_length=64)
        values: dict[str, Any] = {}
        for name in POLICY_FIELDS:
            if name == "auto_retry":
                values[name] = request.POST.get(name, "") == "on"
            elif name in ("high_amount", "critical_amount", "four_eyes_above"):
                parsed = form_amount(request.POST, name, required=False)
                values[name] = parsed if parsed is not None or name != "four_eyes_above" else 0
            else:
                required = name in ("due_hours", "retry_every_minutes", "max_auto_retries")
                values[name] = form_int(request.POST, name, required=required)
        try:
            services.policy_update(kind=kind, values=values, caller=caller)
            messages.success(request, f"Policy for {kind} saved.")
        except AppError as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
        return redirect("exceptions:policies")
    return render(
        request,
        "exceptions/queue/policies.html",
        {
            "policies": list(policies_by_kind(kinds).values()),
            "labels": dict(CaseKind.choices),
            "can_edit": caller.may("policy_edit"),
            "entities": LegalEntity.objects.all(),
        },
    )


@role_required(*VIEWERS)
def dispute_new(request: HttpRequest) -> HttpResponse:
    """Open a customer dispute on a line of a finalized invoice (linked from the invoice page)."""
    from billing import selectors as billing_selectors

    from exceptions.workbench.disputes import dispute_open

    raw = request.GET.get("invoice") or request.POST.get("invoice", "")
    if not raw.isdigit():
        raise Http404
    try:
        invoice = billing_selectors.invoice_detail(pk=int(raw))
    except ObjectDoesNotExist:
        raise Http404 from None
    if request.method == "POST":
        line = form_id(request.POST, "line", label="Line", required=False)
        comment = form_text(request.POST, "comment", label="Comment")
        try:
            case = dispute_open(
                invoice_id=invoice.pk,
                line_id=line,
                comment=comment,
                caller=_caller(request),
            )
        except AppError as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
        else:
            messages.success(request, f"Dispute case #{case.pk} opened.")
            return redirect("exceptions:case", pk=case.pk)
    return render(
        request,
        "exceptions/queue/dispute_new.html",
        {"invoice": invoice, "lines": invoice.lines.order_by("position")},
    )


@require_POST
@role_required(*VIEWERS)
def credit_request(request: HttpRequest, pk: int) -> HttpResponse:
    """The invoice page's confirmed credit memo: proposed on a case, under four eyes."""
    from exceptions.workbench.credits import credit_memo_request

    whole = request.POST.get("whole") == "1"
    lines = form_amounts_by_id(request.POST, "line_", label="The line amount")
    reason = form_text(request.POST, "reason", label="Reason")
    token = form_token(request.POST)  # required: the same submit twice proposes once
    try:
        case, proposal = credit_memo_request(
            invoice_id=pk,
            lines=None if whole else lines,
            reason=reason,
            caller=_caller(request),
            token=token,
        )
    except ObjectDoesNotExist:
        raise Http404 from None
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
        return redirect("billing:invoice", pk=pk)
    messages.success(request, f"Case #{case.pk}: {dispatch.proposal_message(proposal)}")
    return redirect("exceptions:case", pk=case.pk)
