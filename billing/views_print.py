"""The printable invoice or credit memo: one template, shown as a page and rendered as a PDF.

The PDF is the same HTML laid out by WeasyPrint (print media, A4, page numbers),
so what the page shows and what the customer receives cannot drift apart.
Who may see it: everyone who may see the invoice (billing.views.VIEWERS).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string

from billing import selectors
from billing.models import DocumentKind, Invoice
from billing.views import VIEWERS
from core.roles import role_required


def _context(pk: int) -> dict[str, Any]:
    try:
        invoice = selectors.invoice_detail(pk=pk)
    except Invoice.DoesNotExist:
        raise Http404 from None
    return {
        "invoice": invoice,
        "lines": invoice.lines.all(),
        "tax_lines": invoice.tax_lines.all(),
        "paid": invoice.payments.aggregate(s=Sum("amount"))["s"],
        "balance_due": selectors.invoice_balance_due(invoice=invoice),
        # a credit memo's total is negative; the sentence says by how much it lowers the debt
        "credit_amount": -invoice.total if invoice.kind == DocumentKind.CREDIT_MEMO else None,
    }


def pdf_filename(invoice: Invoice) -> str:
    """``US-INV-2026-000001.pdf``; a draft is ``draft-<id>.pdf``."""
    return f"{invoice.number or f'draft-{invoice.pk}'}.pdf"


def invoice_pdf_bytes(*, html: str, base_url: str) -> bytes:
    """The printable page as PDF (WeasyPrint, print media).

    Imported here, not at the top: WeasyPrint loads Pango when imported, and a machine
    without it should lose the PDF only, not every billing page.
    """
    from weasyprint import HTML

    pdf: bytes = HTML(string=html, base_url=base_url).write_pdf()
    return pdf


@role_required(*VIEWERS)
def invoice_print(request: HttpRequest, pk: int) -> HttpResponse:
    html = render_to_string("billing/invoice_print.html", _context(pk), request=request)
    return HttpResponse(html)


@role_required(*VIEWERS)
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    context = _context(pk)
    html = render_to_string("billing/invoice_print.html", context, request=request)
    pdf = invoice_pdf_bytes(html=html, base_url=request.build_absolute_uri("/"))
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{pdf_filename(context["invoice"])}"'
    return response
