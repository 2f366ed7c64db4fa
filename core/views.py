from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from core.api.errors import error_body
from core.error_codes import CoreErrorCode


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (no dependency checked)."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: database reachable, migrations applied, task broker reachable."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
        plan = MigrationExecutor(connection).migration_plan(
            MigrationExecutor(connection).loader.graph.leaf_nodes()
        )
        checks["migrations"] = "ok" if not plan else f"{len(plan)} unapplied"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the message says which
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"[:300]
        checks.setdefault("migrations", "unknown")
    try:
        from django_q.brokers import get_broker

        broker = get_broker()
        checks["broker"] = "ok" if broker.ping() else "not reachable"
        checks["broker_kind"] = type(broker).__name__
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {exc.__class__.__name__}: {exc}"[:300]
    ready = all(v == "ok" for k, v in checks.items() if k != "broker_kind")
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


API_PREFIXES = ("/api/", "/compat/")

#: The error pages (issue 15, item 8): people get a page in the application's style
#: (templates/<status>.html on base.html), API clients JSON with a stable code.


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def _error(
    request: HttpRequest, *, status: int, code: CoreErrorCode, message: str, detail: str = ""
) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body(code=code, message=message), status=status)
    return render(request, f"{status}.html", {"message": message, "detail": detail}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """400: the request could not be read (a malformed form, a bad header)."""
    return _error(
        request,
        status=400,
        code=CoreErrorCode.MALFORMED_REQUEST,
        message="Ledgerline could not read this request. Nothing was changed.",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """403: the role does not allow it (the decorator's message names who may)."""
    said = str(exception) if exception is not None and str(exception) else ""
    return _error(
        request,
        status=403,
        code=CoreErrorCode.PERMISSION_DENIED,
        message=said or "Your role does not allow this page.",
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """403 for a form whose security token is missing or stale (CSRF_FAILURE_VIEW)."""
    return _error(
        request,
        status=403,
        code=CoreErrorCode.PERMISSION_DENIED,
        message="This form had expired or was sent from another site, so it was not accepted. "
        "Nothing was changed: go back, reload the page and send it again.",
        detail=reason,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON with a code for API clients, the site's page for people."""
    if _is_api(request):
        return JsonResponse(
            error_body(
                code=CoreErrorCode.NOT_FOUND, message=f"There is no API endpoint at {request.path}."
            ),
            status=404,
        )
    return render(request, "404.html", status=404)


#: What a person is told when the styled 500 page itself cannot be drawn.
PLAIN_500 = (
    "<!doctype html><title>Server error</title><h1>Something went wrong</h1>"
    "<p>Ledgerline could not handle this request. Nothing was changed; try again, "
    "and tell an administrator if it happens again.</p>"
)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON for API clients; the site's page for people, or a plain one when drawing that
    fails too (the database may be what failed: the menu reads the user's roles)."""
    if _is_api(request):
        return JsonResponse(
            error_body(
                code=CoreErrorCode.SERVER_ERROR,
                message="Ledgerline failed to handle this request; it has been logged.",
            ),
            status=500,
        )
    try:
        return render(request, "500.html", status=500)
    except Exception:  # noqa: BLE001 - the error page must not fail; the first error is logged
        return HttpResponse(PLAIN_500, status=500)
