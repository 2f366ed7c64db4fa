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


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON with a code for API clients, the site's page for people."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(
            error_body(
                code=CoreErrorCode.NOT_FOUND, message=f"There is no API endpoint at {request.path}."
            ),
            status=404,
        )
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON for API clients; a plain page (no template context that could fail again) for people."""
    if request.path.startswith(API_PREFIXES):
        return JsonResponse(
            error_body(
                code=CoreErrorCode.SERVER_ERROR,
                message="Ledgerline failed to handle this request; it has been logged.",
            ),
            status=500,
        )
    return HttpResponse(
        "<!doctype html><title>Server error</title><h1>Something went wrong</h1>"
        "<p>Ledgerline could not handle this request. Nothing was changed; try again, "
        "and tell an administrator if it happens again.</p>",
        status=500,
    )
