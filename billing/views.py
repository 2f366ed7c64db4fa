"""Billing pages: invoices (list, detail, print), lineage, billing runs with live progress.

Who may do what (checked here, on the server):
  view invoices, runs, lineage   finance_clerk, finance_approver, integration_admin, auditor
  start a billing run            integration_admin
  finalize drafts                finance_approver, integration_admin
  void, issue credit memos       finance_approver
  mark paid                      finance_clerk, finance_approver
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.query import date_params
from core.redirects import safe_next_url
from billing import selectors, services
from billing.models import BillingRun, DocumentKind, Invoice, InvoiceStatus, PaymentMethod
from billing.periods import parse_period
from billing.selectors import ACTION_ROLES, InvoiceAction
from core.errors import AppError, NotFound
from core.form_input import (
    FormInputError,
    form_amount,
    form_amounts_by_id,
    form_date,
    form_ids,
    form_text,
    form_token,
)
from core.formatting import format_money
from core.models import LegalEntity
from core.roles import (
    AUDITOR,
    FINANCE_APPROVER,
    FINANCE_CLERK,
    INTEGRATION_ADMIN,
    has_role,
    role_required,
)
from core.actors import Actor

VIEWERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)
RUNNERS = (INTEGRATION_ADMIN,)
FINALIZERS = ACTION_ROLES[InvoiceAction.FINALIZE]
CORRECTORS = ACTION_ROLES[InvoiceAction.VOID]
PAYMENT_RECORDERS = ACTION_ROLES[InvoiceAction.MARK_PAID]
#: Rows per page on the invoice list and the lineage event list.
PAGE_SIZE = 50


def _filtered_invoices(q: QueryDict) -> tuple[QuerySet[Invoice], list[str]]:
    dates, errors = date_params(q, "issued_from", "issued_to")
    try:
        docs = selectors.invoices(
            customer=q.get("customer", "").strip(),
            legal_entity=q.get("legal_entity", ""),
            status=q.get("status", ""),
            kind=q.get("kind", ""),
            period=q.get("period", "").strip(),
            issued_from=dates["issued_from"],
            issued_to=dates["issued_to"],
        )
    except ValueError as exc:
        errors.append(str(exc))
        docs = selectors.invoices()
    return docs, errors


@role_required(*VIEWERS)
def invoice_list(request: HttpRequest) -> HttpResponse:
    q = request.GET
    docs, errors = _filtered_invoices(q)
    page = Paginator(docs, PAGE_SIZE).get_page(q.get("page"))
    params = q.copy()
    params.pop("page", None)
    return render(
        request,
        "billing/invoice_list.html",
        {
            "page": page,
            "filters": q,
            "errors": errors,
            "query": params.urlencode(),
            "entities": LegalEntity.objects.order_by("code"),
            "statuses": InvoiceStatus.choices,
            "kinds": DocumentKind.choices,
            "can_finalize": has_role(request.user, *FINALIZERS),
            "totals": selectors.invoice_totals_by_currency(docs=docs),
        },
    )


@role_required(*VIEWERS)
def search(request: HttpRequest) -> HttpResponse:
    """Find a document by its number or a customer by name or code (the box on every page)."""
    q = request.GET.get("q", "")
    return render(request, "billing/search.html", {"q": q, "result": selectors.search(q=q)})


@role_required(*VIEWERS)
def invoice_export(request: HttpRequest) -> HttpResponse:
    """The invoice list's filtered documents as CSV (amounts in each currency's minor units)."""
    docs, _errors = _filtered_invoices(request.GET)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
    csv.writer(response).writerows(selectors.invoice_csv_rows(docs=docs))
    return response


@role_required(*VIEWERS)
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        invoice = selectors.invoice_detail(pk=pk)
    except Invoice.DoesNotExist:
        raise Http404 from None
    actions = selectors.invoice_actions(invoice=invoice, user=request.user)
    return render(
        request,
        "billing/invoice_detail.html",
        {
            "invoice": invoice,
            "lines": invoice.lines.all(),
            "tax_lines": invoice.tax_lines.all(),
            "payments": invoice.payments.all(),
            "balance_due": selectors.invoice_balance_due(invoice=invoice),
            "today": timezone.localdate(),
            "methods": PaymentMethod.choices,
            "can_finalize": InvoiceAction.FINALIZE in actions,
            "can_correct": InvoiceAction.CREDIT in actions,
            "can_void": InvoiceAction.VOID in actions,
            "can_mark_paid": InvoiceAction.MARK_PAID in actions,
            # what this user cannot do here, and why (the same rule the services apply)
            "refused": [(a.label, r.message) for a, r in actions.refused.items()],
            # one one-time token per form: a double submit is applied once (ActionKey)
            "form_tokens": {action.value: uuid.uuid4().hex for action in InvoiceAction},
        },
    )


@role_required(*VIEWERS)
def invoice_history(request: HttpRequest, pk: int) -> HttpResponse:
    """The history tab: every audit entry about the document, as field-by-field changes."""
    invoice = get_object_or_404(selectors.invoices(), pk=pk)
    rows = selectors.invoice_history(invoice=invoice)
    return render(request, "billing/invoice_history.html", {"invoice": invoice, "rows": rows})


def _act(
    request: HttpRequest,
    pk: int,
    kind: InvoiceAction,
    action: Callable[[Invoice, Actor, str | None], str],
) -> HttpResponse:
    """Take `kind` on the invoice if `invoice_actions` allows it, else show why not."""
    invoice = get_object_or_404(Invoice, pk=pk)
    refusal = selectors.invoice_actions(invoice=invoice, user=request.user).refused.get(kind)
    if refusal is not None:
        messages.error(request, f"{refusal.message} ({refusal.code})")
        return redirect("billing:invoice", pk=pk)
    try:
        key = form_token(request.POST)  # required: a double submit is applied once
        result = action(invoice, Actor.for_user(request.user), key)
        messages.success(request, result)
    except FormInputError:
        raise  # the 400 page naming the field (core.middleware.FormInputErrorMiddleware)
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    return redirect("billing:invoice", pk=pk)


def _confirm(
    request: HttpRequest,
    pk: int,
    kind: InvoiceAction,
    consequences: list[str],
    preview: services.CreditPreview | None = None,
    action_url: str = "",
) -> HttpResponse | None:
    """Unless the form says `confirmed`, the page that says what `kind` will do (None: go on).

    The confirmation re-posts the same fields (the one-time token included), so
    nothing is claimed or changed until the person confirms.
    """
    if request.POST.get("confirmed") == "1":
        return None
    invoice = get_object_or_404(selectors.invoices(), pk=pk)
    refusal = selectors.invoice_actions(invoice=invoice, user=request.user).refused.get(kind)
    if refusal is not None:
        messages.error(request, f"{refusal.message} ({refusal.code})")
        return redirect("billing:invoice", pk=pk)
    fields = [(k, v) for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken",)]
    return render(
        request,
        "billing/invoice_confirm.html",
        {
            "invoice": invoice,
            "kind": kind,
            "consequences": consequences,
            "preview": preview,
            "fields": fields,
            "action_url": action_url or request.path,
        },
    )


def _erp_sentence(invoice: Invoice, what: str) -> str:
    return f"{what} will be posted to the ERP connections of {invoice.legal_entity.name}."


@require_POST
@role_required(*FINALIZERS)
def invoice_finalize(request: HttpRequest, pk: int) -> HttpResponse:
    inv = get_object_or_404(selectors.invoices(), pk=pk)
    ask = _confirm(
        request,
        pk,
        InvoiceAction.FINALIZE,
        [
            f"{inv} gets the next number of {inv.legal_entity.code}'s "
            f"{inv.get_kind_display().lower()} series (gapless per entity and year) and today "
            f"as its issue date; it falls due {inv.contract.payment_terms_days} days later.",
            "Its lines and amounts can no longer be changed; corrections are credit memos.",
            _erp_sentence(inv, "The document and its journal"),
        ],
    )
    if ask is not None:
        return ask
    return _act(
        request,
        pk,
        InvoiceAction.FINALIZE,
        lambda inv, actor, key: "Finalized as "
        f"{services.invoice_finalize(invoice=inv, actor=actor, idempotency_key=key)}.",
    )


@require_POST
@role_required(*CORRECTORS)
def invoice_void(request: HttpRequest, pk: int) -> HttpResponse:
    reason = form_text(request.POST, "reason", label="Reason")
    inv = get_object_or_404(selectors.invoices(), pk=pk)
    ask = _confirm(
        request,
        pk,
        InvoiceAction.VOID,
        [
            f"{inv} keeps its number (the series stays gapless) and is marked void with your "
            f"reason: \u201c{reason}\u201d.",
            "Nothing is owed on it any more; this cannot be undone.",
            _erp_sentence(inv, "The reversal of its journal"),
        ],
    )
    if ask is not None:
        return ask

    def void(inv: Invoice, actor: Actor, key: str | None) -> str:
        voided = services.invoice_void(invoice=inv, reason=reason, actor=actor, idempotency_key=key)
        return f"{voided} is void."

    return _act(request, pk, InvoiceAction.VOID, void)


@require_POST
@role_required(*PAYMENT_RECORDERS)
def invoice_mark_paid(request: HttpRequest, pk: int) -> HttpResponse:
    """Record a payment: amount, date, method, reference (partial payments leave a balance)."""
    post = request.POST

    def record(inv: Invoice, actor: Actor, key: str | None) -> str:
        # read once the action is allowed (a refusal says why first), before anything changes
        amount = form_amount(post, "amount", label="Amount received")
        received_on = form_date(post, "received_on", label="Received on")
        method = form_text(post, "method", label="Method", max_length=20)
        reference = form_text(post, "reference", label="Reference", max_length=200)
        assert amount is not None and received_on is not None
        payment = services.invoice_payment_record(
            invoice=inv,
            amount=amount,
            received_on=received_on,
            method=method,
            reference=reference,
            actor=actor,
            idempotency_key=key,
        )
        cur = payment.invoice.currency
        got = format_money(payment.amount, currency=cur.code, minor_units=cur.minor_units)
        if payment.invoice.status == InvoiceStatus.PAID:
            return f"Payment of {got} recorded; {payment.invoice} is paid."
        left = selectors.invoice_balance_due(invoice=payment.invoice)
        due = format_money(left, currency=cur.code, minor_units=cur.minor_units)
        return f"Payment of {got} recorded; {due} is still due."

    return _act(request, pk, InvoiceAction.MARK_PAID, record)


@require_POST
@role_required(*ACTION_ROLES[InvoiceAction.CREDIT])
def invoice_credit(request: HttpRequest, pk: int) -> HttpResponse:
    """Credit the whole invoice, or the amounts typed per line; first shows net, tax and gross."""
    reason = form_text(request.POST, "reason", label="Reason")
    amounts = form_amounts_by_id(request.POST, "line_", label="The line amount")
    whole = request.POST.get("whole") == "1"
    if not whole and not amounts:
        messages.error(request, "Type an amount on at least one line, or credit the whole invoice.")
        return redirect("billing:invoice", pk=pk)
    inv = get_object_or_404(selectors.invoices(), pk=pk)
    if request.POST.get("confirmed") != "1":
        try:
            preview = services.credit_memo_preview(invoice=inv, lines=None if whole else amounts)
        except AppError as exc:
            messages.error(request, f"{exc.message} ({exc.code})")
            return redirect("billing:invoice", pk=pk)
        ask = _confirm(
            request,
            pk,
            InvoiceAction.CREDIT,
            [
                f"A credit memo against {inv} is proposed, reason \u201c{reason}\u201d: it is "
                "issued with the next number of "
                f"{inv.legal_entity.code}'s credit memo series once a different approver "
                "approves it in the exception queue (four eyes).",
                "It lowers what the customer owes on the invoice by its gross amount.",
                _erp_sentence(inv, "The credit memo and its journal"),
            ],
            preview,
            # four eyes (DESIGN invariant 6): the exception queue proposes it, a second
            # person approves it there
            action_url=reverse("exceptions:credit_request", args=[pk]),
        )
        if ask is not None:
            return ask
    messages.error(
        request,
        "A credit memo is proposed from its preview and approved by a second person in the "
        "exception queue; nothing was issued.",
    )
    return redirect("billing:invoice", pk=pk)


@require_POST
@role_required(*FINALIZERS)
def invoices_finalize_selected(request: HttpRequest) -> HttpResponse:
    ids = form_ids(request.POST, "invoice", label="Each selected invoice")
    if not ids:
        messages.error(request, "Select at least one draft.")
    else:
        _finalize(
            request,
            lambda actor, key: services.invoices_finalize(
                invoice_ids=ids, actor=actor, idempotency_key=key
            ),
            lambda done: f"Finalized {done} of {len(ids)} selected document(s).",
        )
    return redirect(safe_next_url(request, "billing:invoices"))


def _finalize(
    request: HttpRequest,
    finalize: Callable[[Actor, str], list[Invoice]],
    said: Callable[[int], str],
) -> None:
    """Finalize a set of drafts under the form's one-time token; say how many, or that the
    same submit was already done."""
    token = form_token(request.POST)
    try:
        done = finalize(Actor.for_user(request.user), token)
        messages.success(request, said(len(done)))
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")


@role_required(*VIEWERS)
def line_lineage(request: HttpRequest, pk: int) -> HttpResponse:
    from billing.models import InvoiceLine

    try:
        line = selectors.invoice_line(pk=pk)
    except InvoiceLine.DoesNotExist:
        raise Http404 from None
    page = Paginator(selectors.line_events(line=line), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "billing/line_lineage.html", {"line": line, "page": page})


@role_required(*VIEWERS)
def event_lines(request: HttpRequest) -> HttpResponse:
    """From an event (its seq) to the invoice lines it was billed on."""
    raw = request.GET.get("seq", "").strip()
    lines, error = None, ""
    if raw:
        try:
            lines = list(selectors.event_invoice_lines(event_seq=int(raw)))
        except (ValueError, NotFound):
            error = f"No usage event with seq {raw!r}."
    return render(request, "billing/event_lines.html", {"seq": raw, "lines": lines, "error": error})


@role_required(*VIEWERS)
def run_list(request: HttpRequest) -> HttpResponse:
    runs = selectors.billing_runs()[:100]
    return render(
        request,
        "billing/run_list.html",
        {
            "runs": runs,
            "entities": LegalEntity.objects.order_by("code"),
            "can_run": has_role(request.user, *RUNNERS),
            "can_finalize": has_role(request.user, *FINALIZERS),
        },
    )


@require_POST
@role_required(*RUNNERS)
def run_start(request: HttpRequest) -> HttpResponse:
    code = form_text(request.POST, "entity", label="Legal entity", max_length=64)
    period = form_text(request.POST, "period", label="Period", max_length=7)
    token = form_token(request.POST)
    entity = LegalEntity.objects.filter(code=code).first()
    if entity is None:
        messages.error(request, "Choose a legal entity.")
        return redirect("billing:runs")
    try:
        month = parse_period(period)
    except ValueError as exc:
        raise FormInputError("period", f"Period: {exc}.") from None
    try:
        run = services.billing_run_start(
            legal_entity=entity,
            month=month,
            actor=Actor.for_user(request.user),
            idempotency_key=token,
        )
        messages.success(request, f"Billing run {run.label} of {entity.code} queued.")
    except AppError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    return redirect("billing:runs")


@role_required(*VIEWERS)
def run_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The htmx fragment the runs page polls every two seconds while a run is going."""
    run = get_object_or_404(selectors.billing_runs(), pk=pk)
    return render(
        request,
        "billing/_run_row.html",
        {"run": run, "can_finalize": has_role(request.user, *FINALIZERS)},
    )


@require_POST
@role_required(*FINALIZERS)
def run_finalize(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(BillingRun, pk=pk)
    _finalize(
        request,
        lambda actor, key: services.billing_run_finalize(run=run, actor=actor, idempotency_key=key),
        lambda done: f"Finalized {done} draft(s) of run {run.label}.",
    )
    return redirect("billing:runs")
