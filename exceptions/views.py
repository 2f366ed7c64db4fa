from __future__ import annotations


from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.query import date_params
from core.roles import (
    AUDITOR,
    FINANCE_APPROVER,
    FINANCE_CLERK,
    INTEGRATION_ADMIN,
    has_role,
    role_required,
)
from exceptions import history, selectors
from exceptions.models import ExceptionCase
from exceptions.services import audit_verify_chain

#: The history tab of each kind of object that has one (URL names: no app is imported).
HISTORY_PAGES = {
    "billing.invoice": "billing:invoice_history",
    "core.customer": "billing:customer_history",
    "billing.contract": "billing:contract_history",
    "billing.priceplan": "billing:plan_history",
    "billing.billingrun": "billing:run",
    "exceptions.exceptioncase": "exceptions:case_history",
}


def history_url(object_type: str, object_id: str) -> str:
    """The history tab of an audited object, or "" (a batch, or a kind without one)."""
    name = HISTORY_PAGES.get(object_type)
    return reverse(name, args=[int(object_id)]) if name and object_id.isdigit() else ""


#: Who reads cases (the queue's readers).
CASE_READERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)


@role_required(AUDITOR, FINANCE_APPROVER)
def audit_list(request: HttpRequest) -> HttpResponse:
    """The audit trail, filterable by object, actor, action and date."""
    q = request.GET
    dates, errors = date_params(q, "date_from", "date_to")
    entries = selectors.audit_entries(
        object_type=q.get("object_type", ""),
        object_id=q.get("object_id", "").strip(),
        actor=q.get("actor", "").strip(),
        action=q.get("action", "").strip(),
        date_from=dates["date_from"],
        date_to=dates["date_to"],
    )
    page = Paginator(entries, 50).get_page(q.get("page"))
    params = q.copy()
    params.pop("page", None)
    return render(
        request,
        "exceptions/audit_list.html",
        {
            "page": page,
            # each entry with its before and after as field-by-field changes
            "rows": [
                (
                    e,
                    history.field_changes(e.before, e.after),
                    history_url(e.object_type, e.object_id),
                )
                for e in page
            ],
            "object_types": selectors.audit_object_types(),
            "filters": q,
            "errors": errors,
            "query": params.urlencode(),
            "can_verify": has_role(request.user, AUDITOR),
        },
    )


@role_required(*CASE_READERS)
def case_history(request: HttpRequest, pk: int) -> HttpResponse:
    """The history tab of a case: its own entries and its source record's, field by field."""
    case = get_object_or_404(ExceptionCase, pk=pk)
    return render(
        request,
        "exceptions/case_history.html",
        {"case": case, "rows": history.case_history(case=case)},
    )


@require_POST
@role_required(AUDITOR)
def audit_verify(request: HttpRequest) -> HttpResponse:
    """Walk the whole hash chain now and show the result: every entry intact (how many), or the
    first broken one and what is wrong with it (as `manage.py verify_audit` does)."""
    checked, broken = audit_verify_chain()
    return render(
        request,
        "exceptions/audit_verify.html",
        {"checked": checked, "broken": broken, "at": timezone.now()},
    )
