"""One DRF exception handler: every API error is {"code", "message", "extra"}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.error_codes import CoreErrorCode
from core.errors import AppError

_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.NotAuthenticated: CoreErrorCode.AUTH_MISSING,
    exceptions.AuthenticationFailed: CoreErrorCode.AUTH_INVALID,
    exceptions.PermissionDenied: CoreErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: CoreErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: CoreErrorCode.METHOD_NOT_ALLOWED,
    exceptions.UnsupportedMediaType: CoreErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.ParseError: CoreErrorCode.MALFORMED_REQUEST,
    exceptions.ValidationError: CoreErrorCode.VALIDATION_FAILED,
    exceptions.Throttled: CoreErrorCode.THROTTLED,
}


def error_body(*, code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "extra": extra or {}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, AppError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response

    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    detail_codes = exc.get_codes()
    if isinstance(detail_codes, str) and detail_codes in {
        CoreErrorCode.AUTH_REVOKED,
        CoreErrorCode.SCOPE_MISSING,
    }:
        code = detail_codes
    if isinstance(exc, exceptions.ValidationError):
        message = "The request has invalid fields; see extra.fields."
        extra: dict[str, Any] = {"fields": exc.detail}
    else:
        message = str(exc.detail)
        extra = {}
    if isinstance(exc, exceptions.Throttled):
        wait: float | None = exc.wait  # type: ignore[attr-defined]  # set by Throttled.__init__; not in the DRF stubs
        if wait is not None:
            extra["retry_after_seconds"] = int(wait)
    response.data = error_body(code=code, message=message, extra=extra)
    return response
