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


#: OpenAPI links of the main read and act flows, for schemathesis' stateful phase (and for a
#: reader of the schema): (from operation, its status, link name, to operation, parameters).
#: A list's link takes its first row (`results/0`).
FIRST = "$response.body#/results/0/id"
LINKS: list[tuple[str, str, str, str, dict[str, str]]] = [
    ("events_ingest", "200", "RejectedEvents", "api_v1_metering_rejected_list", {}),
    ("events_ingest", "200", "ControlTotals", "api_v1_metering_control_totals_retrieve", {}),
    ("events_ingest", "200", "ExceptionCases", "api_v1_exception_cases_list", {}),
    (
        "api_v1_metering_rejected_list",
        "200",
        "Resubmit",
        "api_v1_metering_rejected_resubmit_create",
        {"id": FIRST},
    ),
    (
        "api_v1_metering_metrics_create",
        "201",
        "NewVersion",
        "api_v1_metering_metrics_versions_create",
        {"code": "$response.body#/code"},
    ),
    ("api_v1_invoices_list", "200", "Invoice", "api_v1_invoices_retrieve", {"id": FIRST}),
    ("api_v1_invoices_list", "200", "InvoiceLines", "api_v1_invoices_lines_list", {"id": FIRST}),
    (
        "api_v1_invoices_retrieve",
        "200",
        "Lines",
        "api_v1_invoices_lines_list",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_invoices_lines_list",
        "200",
        "Lineage",
        "api_v1_invoice_lines_lineage_retrieve",
        {"id": FIRST},
    ),
    (
        "api_v1_exception_cases_list",
        "200",
        "Case",
        "api_v1_exception_cases_retrieve",
        {"id": FIRST},
    ),
    (
        "api_v1_exception_cases_list",
        "200",
        "Act",
        "api_v1_exception_cases_actions_create",
        {"id": FIRST},
    ),
    (
        "api_v1_exception_cases_retrieve",
        "200",
        "Act",
        "api_v1_exception_cases_actions_create",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_exception_cases_actions_create",
        "200",
        "Case",
        "api_v1_exception_cases_retrieve",
        {"id": "$response.body#/case/id"},
    ),
    ("api_v1_postings_list", "200", "Posting", "api_v1_postings_retrieve", {"id": FIRST}),
    (
        "api_v1_postings_retrieve",
        "200",
        "Replay",
        "api_v1_postings_replay_create",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_billing_price_plans_create",
        "201",
        "NewVersion",
        "api_v1_billing_price_plans_versions_create",
        {"code": "$response.body#/code"},
    ),
    (
        "api_v1_billing_contracts_create",
        "201",
        "Amend",
        "api_v1_billing_contracts_amendments_create",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_billing_contracts_create",
        "201",
        "End",
        "api_v1_billing_contracts_end_create",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_billing_contracts_list",
        "200",
        "Amend",
        "api_v1_billing_contracts_amendments_create",
        {"id": FIRST},
    ),
    (
        "api_v1_erp_connections_create",
        "201",
        "Connection",
        "api_v1_erp_connections_retrieve",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_erp_connections_list",
        "200",
        "Connection",
        "api_v1_erp_connections_retrieve",
        {"id": FIRST},
    ),
    (
        "api_v1_erp_connections_retrieve",
        "200",
        "Change",
        "api_v1_erp_connections_partial_update",
        {"id": "$response.body#/id"},
    ),
    (
        "api_v1_erp_connections_retrieve",
        "200",
        "AccountMapping",
        "api_v1_erp_connections_account_mappings_create",
        {"id": "$response.body#/id"},
    ),
]


def add_links(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the `LINKS` on their responses. A link naming an
    operation the schema does not have is an error here, not a silently shorter test."""
    operations = {
        op["operationId"]: op
        for ops in result.get("paths", {}).values()
        for method, op in ops.items()
        if isinstance(op, dict) and "operationId" in op
    }
    for source, status, name, target, parameters in LINKS:
        if source not in operations or target not in operations:
            raise ValueError(f"link {source} -> {target}: no such operation")
        response = operations[source]["responses"].setdefault(status, {"description": ""})
        link: dict[str, Any] = {"operationId": target}
        if parameters:
            link["parameters"] = parameters
        response.setdefault("links", {})[name] = link
    return result
