"""The `Idempotency-Key` header of the API's actions, one convention for every app: a retried
request with the same key is applied once. The exception-case actions replay their first
answer (exceptions.api); billing's plan and contract actions claim the key as a
`billing.ActionKey`, the same one-time key the pages' forms carry, and a retry is told
409 `billing_already_applied` naming what the first request did."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from core.error_codes import CoreErrorCode
from core.errors import AppError

#: Longest key a client may send (the stored key adds the API key's id).
KEY_MAX = 80

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (at most 80 characters); a retry with the same key is "
    "applied once.",
)


def idempotency_key(request: Request) -> str | None:
    """The request's key, scoped to its API key (two clients' "1" are different keys); None
    without the header."""
    raw = request.headers.get("Idempotency-Key", "").strip()
    if not raw:
        return None
    if len(raw) > KEY_MAX or not raw.isprintable():
        raise AppError(
            f"Idempotency-Key is 1 to {KEY_MAX} printable characters.",
            code=CoreErrorCode.INVALID_PARAMETER,
            extra={"field": "Idempotency-Key"},
        )
    client = getattr(request.auth, "pk", None)
    return f"api{client}:{raw}"
