from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseBase, JsonResponse
from django.shortcuts import render

from core.error_codes import CoreErrorCode
from core.form_input import BIGINT_MAX, FormInputError


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Every page needs a logged-in user, except API views.

    REST framework views authenticate themselves (Bearer API keys) and answer
    401 with a JSON body, which is what an API client needs, not a redirect to
    the login page.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if getattr(view_func, "cls", None) is not None and hasattr(view_func, "initkwargs"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class UserTimezoneMiddleware:
    """Pages show times in the user's time zone: the `tz` cookie set by static/js/timezone.js
    (an IANA name the browser reports), else UTC."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        from urllib.parse import unquote
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from django.utils import timezone

        name = unquote(request.COOKIES.get("tz", ""))
        try:
            zone = ZoneInfo(name) if name else None
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        if zone is not None:
            timezone.activate(zone)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


# Query parameters read as whole numbers by the API's pagination and the pages.
_INTEGER_PARAMS = frozenset({"limit", "offset", "page", "page_size"})


def _bad_parameter(name: str, value: str) -> str | None:
    """Why a query or form parameter is refused before any view reads it, or None."""
    if "\x00" in name or "\x00" in value:
        return f"The parameter {name.replace(chr(0), '')!r} contains a NUL character."
    numeric = name in _INTEGER_PARAMS or name == "id" or name.endswith("_id")
    digits = value.lstrip("+-")
    # isdecimal, not isdigit: '¹' is a digit int() refuses (a 500 the API fuzz test found)
    if numeric and digits.isdecimal() and (len(digits) > 19 or int(digits) > BIGINT_MAX):
        return f"The parameter {name!r} is out of range (at most {BIGINT_MAX})."
    return None


class RefuseBadParametersMiddleware:
    """A 400 naming the parameter for a NUL character in any query or form parameter (the
    database stores none: it answered 500) or a whole number past 64 bits in `limit`,
    `offset`, `page` or an id (issue 12). JSON for /api/ and /compat/, plain text for pages."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        problem = self._problem(request)
        if problem is None:
            return self.get_response(request)
        if request.path.startswith(("/api/", "/compat/")):
            return JsonResponse(
                {"code": CoreErrorCode.INVALID_PARAMETER, "message": problem, "extra": {}},
                status=400,
            )
        return HttpResponseBadRequest(problem, content_type="text/plain; charset=utf-8")

    @staticmethod
    def _problem(request: HttpRequest) -> str | None:
        if "\x00" in request.path:
            return "The address contains a NUL character."
        sources = [request.GET]
        forms = ["application/x-www-form-urlencoded"]
        if not request.path.startswith(("/api/", "/compat/")):
            # not on the API: a view that reads request.body could not after a multipart parse
            forms.append("multipart/form-data")
        if request.content_type in forms:
            sources.append(request.POST)
        for params in sources:
            for name, values in params.lists():
                for value in values:
                    problem = _bad_parameter(name, value)
                    if problem is not None:
                        return problem
        return None


class FormInputErrorMiddleware:
    """A page form's field refused by `core.form_input` (raised before any service ran) is the
    400 page saying what is wrong with which field; nothing was changed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponseBase | None:
        if not isinstance(exception, FormInputError):
            return None
        if request.path.startswith(("/api/", "/compat/")):
            return JsonResponse(exception.as_dict(), status=400)
        return render(
            request,
            "400.html",
            {
                "message": f"{exception.message} Nothing was changed.",
                "detail": f"field \u201c{exception.field}\u201d ({exception.code})",
            },
            status=400,
        )
