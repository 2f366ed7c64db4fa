"""Where a `next` parameter may send the browser: only back into this site."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next_url(request: HttpRequest, fallback: str, *, param: str = "next") -> str:
    """The request's `next` (POST, then GET) if it stays on this host, else `fallback`.

    `fallback` may be a URL name ("billing:invoices") or a path.
    """
    candidate = request.POST.get(param) or request.GET.get(param) or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return resolve_url(fallback)
