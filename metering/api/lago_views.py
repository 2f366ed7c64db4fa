"""Lago-compatible ingestion: `<ledgerline>/compat/lago/api/v1/events[/batch]`.

Request and response shapes, status codes and error bodies follow Lago's
events API (getlago/lago-api EventsController, V1::EventSerializer and its
error rendering), so a Lago client moves by changing only its base URL.
Authentication is the same Bearer key (scope `usage:write`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.errors import exception_handler as ll_exception_handler
from core.errors import AppError
from core.models import ApiScope
from metering import ingest
from metering.api.views import _parser, ingest_request
from metering.error_codes import MeteringErrorCode
from metering.services import EventOutcome, IngestResult, lago_batch_intake, lago_event_intake

LAGO_NS = uuid.UUID("6c1d3f0e-4a8e-4f39-9a51-3d7d0c0f1a2b")

# Our rejection code -> (Lago field, Lago error code).
FIELD_OF = {
    "event_id": "transaction_id",
    "customer_ref": "external_subscription_id",
    "metric": "code",
    "timestamp": "timestamp",
    "source": "transaction_id",
}
LAGO_CODES: dict[str, tuple[str, str]] = {
    MeteringErrorCode.INVALID_TIMESTAMP: ("timestamp", "invalid_format"),
    MeteringErrorCode.EVENT_TOO_OLD: ("timestamp", "event_too_old"),
    MeteringErrorCode.EVENT_IN_FUTURE: ("timestamp", "event_in_future"),
    MeteringErrorCode.UNKNOWN_METRIC: ("code", "metric_not_found"),
    MeteringErrorCode.METRIC_NOT_EFFECTIVE: ("code", "metric_not_effective"),
    MeteringErrorCode.SCHEMA_VIOLATION: ("properties", "invalid_value"),
    MeteringErrorCode.INVALID_VALUE: ("properties", "invalid_value"),
    MeteringErrorCode.VALUE_REQUIRED: ("properties", "value_is_mandatory"),
    MeteringErrorCode.NEGATIVE_VALUE: ("properties", "negative_value"),
    MeteringErrorCode.EVENT_MALFORMED: ("event", "invalid_format"),
}


def lago_error(status: int, *, code: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "error": HTTPStatus(status).phrase, "code": code}
    if details is not None:
        body["error_details"] = details
    return body


def lago_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error the Lago way: {"status", "error", "code"[, "error_details"]}."""
    response = ll_exception_handler(exc, context)
    if response is None:
        return None
    ours = response.data if isinstance(response.data, dict) else {}
    code = ours.get("code", "error")
    if response.status_code == 401:
        response.data = {"status": 401, "error": "Unauthorized"}
    elif response.status_code == 422 and isinstance(exc, AppError):
        response.data = lago_error(
            422, code="validation_errors", details=exc.extra.get("error_details", {})
        )
    else:
        response.data = lago_error(
            response.status_code,
            code=code,
            details={"message": ours.get("message", ""), **ours.get("extra", {})},
        )
    return response


def _field_errors(result: EventOutcome, raw: Any) -> dict[str, list[str]]:
    if result["status"] == ingest.DUPLICATE:
        return {"transaction_id": ["value_already_exist"]}
    code = result.get("code", "")
    if code in LAGO_CODES:
        f, c = LAGO_CODES[code]
        return {f: [c]}
    message = result.get("message", "")
    missing = next((lago for ours, lago in FIELD_OF.items() if f"'{ours}'" in message), "event")
    return {
        missing: [
            "value_is_mandatory" if code == MeteringErrorCode.MISSING_FIELD else "invalid_value"
        ]
    }


def _echo(index: int, raw: dict[str, Any], result: IngestResult, received: str) -> dict[str, Any]:
    cand = result.candidates.get(index)
    ts = cand.timestamp if cand is not None else None
    return {
        "lago_id": str(uuid.uuid5(LAGO_NS, f"{ingest.LAGO_SOURCE}:{raw.get('transaction_id')}")),
        "transaction_id": raw.get("transaction_id"),
        "lago_customer_id": str(cand.customer_id)
        if cand is not None and cand.customer_id
        else None,
        "external_customer_id": raw.get("external_customer_id"),
        "code": raw.get("code"),
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z") if ts else None,
        "properties": raw.get("properties") or {},
        "lago_subscription_id": None,
        "external_subscription_id": raw.get("external_subscription_id"),
        "precise_total_amount_cents": raw.get("precise_total_amount_cents"),
        "created_at": received,
    }


class LagoEvent(serializers.Serializer[dict[str, Any]]):
    transaction_id = serializers.CharField()
    external_subscription_id = serializers.CharField(required=False)
    external_customer_id = serializers.CharField(required=False)
    code = serializers.CharField()
    timestamp = serializers.CharField(required=False, help_text="Unix seconds or ISO 8601.")
    properties = serializers.DictField(required=False)
    precise_total_amount_cents = serializers.CharField(required=False, allow_null=True)


class LagoEventOut(serializers.Serializer[dict[str, Any]]):
    lago_id = serializers.UUIDField()
    transaction_id = serializers.CharField()
    lago_customer_id = serializers.CharField(allow_null=True)
    external_customer_id = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    timestamp = serializers.CharField(allow_null=True)
    properties = serializers.DictField()
    lago_subscription_id = serializers.CharField(allow_null=True)
    external_subscription_id = serializers.CharField(allow_null=True)
    precise_total_amount_cents = serializers.CharField(allow_null=True)
    created_at = serializers.CharField()


class LagoError(serializers.Serializer[dict[str, Any]]):
    status = serializers.IntegerField()
    error = serializers.CharField()
    code = serializers.CharField(required=False)
    error_details = serializers.DictField(required=False)


def lago_responses(ok: Any) -> dict[int, Any]:
    """The statuses a Lago endpoint answers, all errors in Lago's error body."""
    return {200: ok, **{status: LagoError for status in (400, 401, 403, 413, 415, 422, 429)}}


class _LagoBase(APIView):
    required_scope = ApiScope.USAGE_WRITE
    parser_classes = [_parser("application/json")]

    def get_exception_handler(self) -> Callable[[Exception, dict[str, Any]], Response | None]:
        return lago_exception_handler


def _now_iso() -> str:
    from django.utils import timezone

    return timezone.now().isoformat(timespec="seconds").replace("+00:00", "Z")


class LagoEventCreateApi(_LagoBase):
    """Lago `POST /api/v1/events`: `{"event": {...}}` → `{"event": {...}}`; a transaction_id already
    received → 422 `value_already_exist`."""

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        event = LagoEvent()

    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        event = LagoEventOut()

    @extend_schema(
        operation_id="lago_event_create",
        request=InputSerializer,
        responses=lago_responses(OutputSerializer),
    )
    def post(self, request: Request) -> HttpResponse:
        intake = lago_event_intake(request=ingest_request(request))
        result, event, received = intake.result, intake.events[0], _now_iso()
        outcome = result.results[0]
        if outcome["status"] in (ingest.DUPLICATE, ingest.REJECTED):
            raise AppError(
                outcome.get("message", "Event already received."),
                code="validation_errors",
                status=422,
                extra={"error_details": _field_errors(outcome, event)},
            )
        return HttpResponse(
            orjson.dumps({"event": _echo(0, event, result, received)}),
            content_type="application/json",
        )


class LagoEventBatchApi(_LagoBase):
    """Lago `POST /api/v1/events/batch`: `{"events": [...]}` → `{"events": [...]}`; any event not
    taken → 422 with `error_details` per index (the events that were valid are stored)."""

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        events = LagoEvent(many=True)

    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        events = LagoEventOut(many=True)

    @extend_schema(
        operation_id="lago_event_batch",
        request=InputSerializer,
        responses=lago_responses(OutputSerializer),
    )
    def post(self, request: Request) -> HttpResponse:
        intake = lago_batch_intake(request=ingest_request(request))
        result, events, received = intake.result, intake.events, _now_iso()
        errors = {
            str(r["index"]): _field_errors(r, events[r["index"]])
            for r in result.results
            if r["status"] in (ingest.DUPLICATE, ingest.REJECTED)
        }
        if errors:
            raise AppError(
                "Some events were not taken.",
                code="validation_errors",
                status=422,
                extra={"error_details": errors},
            )
        return HttpResponse(
            orjson.dumps({"events": [_echo(i, e, result, received) for i, e in enumerate(events)]}),
            content_type="application/json",
        )


SERVED = ("api/v1/events", "api/v1/events/batch")


@csrf_exempt  # an API path: no session, no CSRF token (a POST would get Django's 403 page)
@login_not_required
def lago_not_found(request: HttpRequest) -> JsonResponse:
    """Any other path under /compat/lago/: Lago's JSON 404, not Django's HTML page (which a Lago
    client reports as a misleading server error)."""
    return JsonResponse(
        lago_error(
            404,
            code="not_found",
            details={
                "message": f"{request.path} is not served by the Lago compatibility layer; it "
                f"serves POST {' and '.join(SERVED)} under the base URL "
                f"{request.build_absolute_uri('/compat/lago/')}."
            },
        ),
        status=404,
    )
