"""Bearer API keys: `Authorization: Bearer ll_<prefix>_<secret>`."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

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


class InvalidKeyThrottle(SimpleRateThrottle):
    """Failed API-key authentications per client address (`API_INVALID_KEY_RATE`).

    Only failures count. Once an address has used up the rate, its requests are
    refused with 429 before any key is looked up, valid ones included, until the
    oldest failure leaves the window: guessing keys costs the guesser time.
    """

    scope = "invalid_api_key"
    # Set by SimpleRateThrottle.__init__ from the rate (None without one); the DRF stubs omit them.
    num_requests: int | None
    duration: int | None

    def get_rate(self) -> str | None:
        rate: str | None = settings.API_INVALID_KEY_RATE
        return rate

    def get_cache_key(self, request: Request, view: object) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def exhausted(self, request: Request) -> bool:
        """True when the address has no failures left in the window (records nothing)."""
        if self.num_requests is None or self.duration is None:
            return False
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        return len(self.history) >= self.num_requests

    def record_failure(self, request: Request) -> None:
        if not self.exhausted(request) and self.num_requests is not None:
            self.throttle_success()  # DRF's word for "count this request in the window"


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
        throttle = InvalidKeyThrottle()
        if throttle.exhausted(request):
            raise exceptions.Throttled(wait=throttle.wait())
        key = api_key_lookup(raw_key=parts[1])
        if key is None:
            throttle.record_failure(request)
            raise AuthFailed("This API key is not valid.", CoreErrorCode.AUTH_INVALID)
        if key.revoked_at is not None:
            throttle.record_failure(request)
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
