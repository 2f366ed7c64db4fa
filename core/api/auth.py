"""Bearer API keys: `Authorization: Bearer ll_<prefix>_<secret>`."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from core.error_codes import CoreErrorCode
from core.models import ApiKey
from core.services import api_key_lookup


@dataclass(frozen=True)
class ApiClient:
    """The principal of a request made with an API key (`request.user`)."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    @property
    def pk(self) -> int:
        return self.api_key.pk

    def __str__(self) -> str:
        return f"api-key:{self.api_key.name}"


class AuthFailed(exceptions.AuthenticationFailed):
    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail=detail, code=code)


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise AuthFailed(
                "The Authorization header must be 'Bearer <key>'.", CoreErrorCode.AUTH_INVALID
            )
        key = api_key_lookup(raw_key=parts[1])
        if key is None:
            raise AuthFailed("This API key is not valid.", CoreErrorCode.AUTH_INVALID)
        if key.revoked_at is not None:
            raise AuthFailed(
                f"This API key was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC.",
                CoreErrorCode.AUTH_REVOKED,
            )
        now = timezone.now()
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            # Touch at most once a minute: the ingest fast path must not write per request.
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return ApiClient(api_key=key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ledgerline"'
