"""Metering pages: control totals, CSV upload with progress, the error report download."""

from __future__ import annotations


from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from core.form_input import form_text
from core.query import date_params
from core.errors import AppError
from core.roles import AUDITOR, FINANCE_APPROVER, FINANCE_CLERK, INTEGRATION_ADMIN, role_required
from core.actors import Actor
from metering import selectors
from metering.models import ImportJob
from metering.services import ENCODINGS, csv_template, import_job_create

READERS = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)
UPLOADERS = (FINANCE_CLERK, INTEGRATION_ADMIN)


@role_required(*READERS)
def control_totals(request: HttpRequest) -> HttpResponse:
    """Per source and day of receipt: received = accepted + duplicate + rejected + held."""
    q = request.GET
    dates, errors = date_params(q, "date_from", "date_to")
    rows = list(
        selectors.control_totals(
            date_from=dates["date_from"],
            date_to=dates["date_to"],
            source=q.get("source") or None,
        )[:500]
    )
    totals = {
        k: sum(getattr(r, k) for r in rows)
        for k in ("accepted", "duplicate", "rejected", "held", "released")
    }
    totals["received"] = sum(r.received for r in rows)
    return render(
        request,
        "metering/control_totals.html",
        {"rows": rows, "totals": totals, "filters": q, "errors": errors},
    )


@role_required(*READERS)
def imports(request: HttpRequest) -> HttpResponse:
    """Upload a usage CSV (ingested by a background task) and see past imports."""
    if request.method == "POST":
        from core.roles import has_role

        if not has_role(request.user, *UPLOADERS):
            raise PermissionDenied("Uploading usage is for finance clerks and integration admins.")
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a CSV file to upload.")
        else:
            try:
                job = import_job_create(
                    upload=upload,
                    user=request.user,
                    actor=Actor.for_user(request.user),
                    encoding=form_text(request.POST, "encoding", label="Encoding", max_length=32)
                    or "utf-8",
                )
            except AppError as exc:
                messages.error(request, exc.message)
            else:
                return redirect("metering:import-detail", pk=job.pk)
    jobs = selectors.import_jobs()[:50]
    return render(request, "metering/imports.html", {"jobs": jobs, "encodings": ENCODINGS})


@role_required(*READERS)
def import_template(request: HttpRequest) -> HttpResponse:
    """The CSV file to start an import from: the header and an example row."""
    response = HttpResponse(csv_template(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="usage-import-template.csv"'
    return response


@role_required(*READERS)
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(ImportJob, pk=pk)
    htmx = request.htmx  # type: ignore[attr-defined]  # django_htmx middleware sets it
    template = "metering/_import_progress.html" if htmx else "metering/import_detail.html"
    return render(request, template, {"job": job})


@role_required(*READERS)
def import_errors(request: HttpRequest, pk: int) -> FileResponse:
    job = get_object_or_404(ImportJob, pk=pk)
    if not job.error_report:
        raise Http404("No error report yet.")
    return FileResponse(
        job.error_report.open("rb"),
        as_attachment=True,
        filename=f"{job.filename.rsplit('.', 1)[0]}-errors.csv",
        content_type="text/csv",
    )
