"""OpenAPI schema generation tuned to our view style."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Name nested serializers after their view: `CustomerListCreateApi.OutputSerializer`
    becomes component `CustomerListCreateApiOutput`, so every view may call its own
    serializers InputSerializer and OutputSerializer (the HackSoft style)."""

    def _get_serializer_name(
        self, serializer: Any, direction: str, bypass_extensions: bool = False
    ) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer = cls.__qualname__.rsplit(".", 1)[0] if "." in cls.__qualname__ else ""
        if outer and not outer.endswith("<locals>") and not name.startswith(outer):
            return f"{outer}{name}"
        return name


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.auth.ApiKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `Bearer ll_<prefix>_<secret>`.",
        }
