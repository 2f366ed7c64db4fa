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


# The error body every API error has (core.api.errors.error_body).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "A stable error code."},
        "message": {"type": "string"},
        "extra": {"type": "object", "additionalProperties": True},
    },
    "required": ["code", "message", "extra"],
}
_COMMON_ERRORS = {
    "400": "The request or one of its parameters is invalid (`code` and `message` say which).",
    "401": "No API key, or an invalid or revoked one.",
    "403": "The key lacks the scope this operation needs.",
    "429": "Too many requests; `extra.retry_after_seconds` says when to retry.",
}


def document_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the errors every view
    can answer (400, 401, 403, 429, 404, and 409 for a write), with the error
    body, unless the view documented its own."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            errors = dict(_COMMON_ERRORS)
            errors["404"] = "No such object (or, on a list, no such page cursor)."
            if method != "get":
                errors["409"] = "The change conflicts with the current state (`code` says how)."
            for status, description in errors.items():
                responses.setdefault(
                    status,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result
