from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key (rate: settings API_KEY_RATE, e.g. 12000/min)."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return None
