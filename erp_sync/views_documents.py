"""The ERP postings of one billing document, as the fragment its invoice page loads (issue 15,
item 3: each posting's status on the invoice page). Billing does not import erp_sync, so the
invoice page asks for this fragment by URL (htmx) and links here without JavaScript."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from billing import selectors as billing_selectors
from core.roles import role_required
from erp_sync import selectors
from erp_sync.views import VIEWERS


@role_required(*VIEWERS)
def document_postings(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The table alone for htmx (the invoice page), else a page of its own."""
    if not billing_selectors.invoices().filter(pk=invoice_id).exists():
        raise Http404(f"No billing document {invoice_id}.")
    fragment = request.headers.get("HX-Request") == "true"
    return render(
        request,
        "erp_sync/_document_postings.html" if fragment else "erp_sync/document_postings.html",
        {
            "postings": list(selectors.document_postings(invoice_id=invoice_id)),
            "invoice_id": invoice_id,
        },
    )
