from __future__ import annotations


from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.query import date_params
from core.roles import AUDITOR, FINANCE_APPROVER, role_required
from exceptions import selectors


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
            "object_types": selectors.audit_object_types(),
            "filters": q,
            "errors": errors,
            "query": params.urlencode(),
        },
    )
