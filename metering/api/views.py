"""Metering API: ingestion (native + CloudEvents), metrics, mappings, dead letter, control totals."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import error_codes as core_codes
from core.errors import AppError
from core.models import ApiKey, ApiScope, Customer
from core.actors import Actor
from metering import selectors
from metering.models import (
    Aggregation,
    CustomerMapping,
    IngestTally,
    MetricDefinition,
    RejectedEvent,
)
from metering.services import (
    IngestRequest,
    customer_mapping_create,
    events_intake,
    metric_create,
    metric_version_add,
    rejected_event_resubmit,
)
from metering.services.intake import CE_BATCH, CE_STRUCTURED


class _RawParser(BaseParser):
    """Declares a media type; the view reads request.body itself (fast JSON decoder)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return None


def _parser(media: str) -> type[BaseParser]:
    return type(f"RawParser_{media}", (_RawParser,), {"media_type": media})


def read_body(request: Request) -> bytes:
    try:
        return request.body
    except RequestDataTooBig as exc:
        raise AppError(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)} MB; send "
            "smaller batches.",
            code=core_codes.REQUEST_TOO_LARGE,
            status=413,
        ) from exc


def media_type(request: Request) -> str:
    return (request.content_type or "").split(";")[0].strip().lower()


CE_BINARY_ATTRIBUTES = ("specversion", "id", "source", "subject", "type", "time")


def ingest_request(request: Request, *, binary_cloudevent: bool = False) -> IngestRequest:
    """What the intake service needs of an ingest request: body, media type, who sent it and, for
    a CloudEvent in binary mode (a ce-specversion header), its ce-* attributes."""
    attributes = None
    if binary_cloudevent and request.headers.get("ce-specversion"):
        attributes = {name: request.headers.get(f"ce-{name}") for name in CE_BINARY_ATTRIBUTES}
    return IngestRequest(
        body=read_body(request),
        media_type=media_type(request),
        actor=Actor.for_request(request),
        api_key=request.auth if isinstance(request.auth, ApiKey) else None,
        ce_attributes=attributes,
    )


class EventResultSerializer(serializers.Serializer[dict[str, Any]]):
    index = serializers.IntegerField()
    event_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected", "held"])
    code = serializers.CharField(required=False)
    message = serializers.CharField(required=False)


class CountsSerializer(serializers.Serializer[dict[str, Any]]):
    received = serializers.IntegerField()
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    held = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    code = serializers.CharField()
    message = serializers.CharField()
    extra = serializers.DictField()


class EventIngestApi(APIView):
    """Send usage events: `{"events": [...]}` (up to 10,000), or CloudEvents 1.0
    (structured, batch, or binary with `ce-*` headers). Each event is answered
    accepted, duplicate, rejected (code, message) or held."""

    required_scope = ApiScope.USAGE_WRITE
    parser_classes = [_parser("application/json"), _parser(CE_STRUCTURED), _parser(CE_BATCH)]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        class EventSerializer(serializers.Serializer[dict[str, Any]]):
            event_id = serializers.CharField(max_length=200)
            source = serializers.CharField(max_length=100)  # type: ignore[assignment]  # stubs: clashes with Field.source
            customer_ref = serializers.CharField(max_length=200)
            metric = serializers.CharField(max_length=100)
            timestamp = serializers.CharField(help_text="ISO 8601 with offset, or Unix seconds.")
            value = serializers.DecimalField(
                max_digits=30,
                decimal_places=6,
                required=False,
                allow_null=True,
                coerce_to_string=False,
            )
            properties = serializers.DictField(required=False)

        events = EventSerializer(many=True)

    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        batch_id = serializers.CharField()
        counts = CountsSerializer()
        results = EventResultSerializer(many=True)

    @extend_schema(
        operation_id="events_ingest",
        request={
            "application/json": InputSerializer,
            CE_STRUCTURED: OpenApiTypes.OBJECT,
            CE_BATCH: OpenApiTypes.OBJECT,
        },
        responses={
            200: OutputSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            413: ErrorSerializer,
            415: ErrorSerializer,
            429: ErrorSerializer,
        },
        parameters=[
            OpenApiParameter(
                "ce-specversion",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="CloudEvents binary mode: with ce-id, ce-source, ce-subject, "
                "ce-type and (optional: the receipt time) ce-time, each percent-encoded UTF-8 as "
                "the HTTP binding says; the body is `data` (read as JSON without a Content-Type).",
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        result = events_intake(request=ingest_request(request, binary_cloudevent=True))
        payload = {"batch_id": result.batch_id, "counts": result.counts, "results": result.results}
        return HttpResponse(orjson.dumps(payload), content_type="application/json")


# --- admin: metrics and mappings ------------------------------------------------------


class MetricListCreateApi(generics.ListAPIView[MetricDefinition]):
    """Metric definitions with their versions; POST creates a metric (version 1)."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[MetricDefinition]):
        versions = serializers.SerializerMethodField()

        class Meta:
            model = MetricDefinition
            fields = ["id", "code", "created_at", "versions"]

        @extend_schema_field(serializers.ListField(child=serializers.DictField()))
        def get_versions(self, obj: MetricDefinition) -> list[dict[str, Any]]:
            return [
                {
                    "version": v.version,
                    "effective_from": v.effective_from,
                    "name": v.name,
                    "unit": v.unit,
                    "aggregation": v.aggregation,
                    "value_property": v.value_property,
                    "properties_schema": v.properties_schema,
                    "accepts_negative": v.accepts_negative,
                }
                for v in obj.versions.order_by("version")
            ]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        code = serializers.SlugField(max_length=100)
        name = serializers.CharField(max_length=200)
        unit = serializers.CharField(max_length=50, required=False, default="")
        aggregation = serializers.ChoiceField(choices=Aggregation.choices)
        value_property = serializers.CharField(
            max_length=100, required=False, default="", allow_blank=True
        )
        properties_schema = serializers.DictField(required=False, default=dict)
        accepts_negative = serializers.BooleanField(required=False, default=False)
        effective_from = serializers.DateTimeField(required=False, allow_null=True, default=None)

    serializer_class = OutputSerializer

    def get_queryset(self) -> QuerySet[MetricDefinition]:
        return selectors.metrics()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = metric_create(actor=Actor.for_request(request), **data.validated_data)
        return Response(self.OutputSerializer(version.metric).data, status=201)


class MetricVersionCreateApi(APIView):
    """A change to a metric: a new version in force from `effective_from`."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        effective_from = serializers.DateTimeField()
        name = serializers.CharField(max_length=200, required=False)
        unit = serializers.CharField(max_length=50, required=False, allow_blank=True)
        aggregation = serializers.ChoiceField(choices=Aggregation.choices, required=False)
        value_property = serializers.CharField(max_length=100, required=False, allow_blank=True)
        properties_schema = serializers.DictField(required=False)
        accepts_negative = serializers.BooleanField(required=False)
        reason = serializers.CharField(required=False, default="", allow_blank=True)

    @extend_schema(request=InputSerializer, responses={201: MetricListCreateApi.OutputSerializer})
    def post(self, request: Request, code: str) -> Response:
        metric = selectors.metric_by_code(code=code)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        metric_version_add(metric=metric, actor=Actor.for_request(request), **data.validated_data)
        return Response(MetricListCreateApi.OutputSerializer(metric).data, status=201)


class MappingListCreateApi(generics.ListAPIView[CustomerMapping]):
    """Identity mappings (source, customer_ref) → customer; POST adds one and releases held events."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[CustomerMapping]):
        customer: serializers.SlugRelatedField[Customer] = serializers.SlugRelatedField(
            slug_field="code", read_only=True
        )

        class Meta:
            model = CustomerMapping
            fields = ["id", "source", "customer_ref", "customer", "created_at"]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        source = serializers.CharField(max_length=100)  # type: ignore[assignment]  # stubs: clashes with Field.source
        customer_ref = serializers.CharField(max_length=200)
        customer_id = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all())

    serializer_class = OutputSerializer
    filterset_fields = ["source", "customer_ref"]

    def get_queryset(self) -> QuerySet[CustomerMapping]:
        return selectors.mappings()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mapping = customer_mapping_create(
            source=data.validated_data["source"],
            customer_ref=data.validated_data["customer_ref"],
            customer=data.validated_data["customer_id"],
            actor=Actor.for_request(request),
        )
        return Response(self.OutputSerializer(mapping).data, status=201)


class RejectedListApi(generics.ListAPIView[RejectedEvent]):
    """The dead letter: rejected events with their raw payload, code and message."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[RejectedEvent]):
        class Meta:
            model = RejectedEvent
            fields = [
                "id",
                "received_at",
                "source",
                "event_id",
                "code",
                "message",
                "raw",
                "raw_text",
                "status",
                "resubmitted_at",
                "resubmission_outcome",
                "case",
            ]

    serializer_class = OutputSerializer
    filterset_fields = ["source", "code", "status"]

    def get_queryset(self) -> QuerySet[RejectedEvent]:
        return selectors.rejected_events()


class RejectedResubmitApi(APIView):
    """Correct a rejected event and send it again (canonical event shape)."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        event = serializers.DictField()

    @extend_schema(request=InputSerializer, responses={200: EventResultSerializer})
    def post(self, request: Request, pk: int) -> Response:
        rejected = selectors.rejected_event(pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = rejected_event_resubmit(
            rejected=rejected,
            corrected=data.validated_data["event"],
            actor=Actor.for_request(request),
        )
        return Response(outcome)


class ControlTotalsApi(APIView):
    """Control totals per source and day of receipt: received = accepted + duplicate + rejected + held."""

    required_scope = ApiScope.USAGE_WRITE

    # Always used with many=True: the instance is the queryset of tallies.
    class OutputSerializer(serializers.Serializer[QuerySet[IngestTally]]):
        source = serializers.CharField()  # type: ignore[assignment]  # stubs: clashes with Field.source
        day = serializers.DateField()
        received = serializers.IntegerField()
        accepted = serializers.IntegerField()
        duplicate = serializers.IntegerField()
        rejected = serializers.IntegerField()
        held = serializers.IntegerField()
        released = serializers.IntegerField()

    @extend_schema(
        parameters=[
            OpenApiParameter("date_from", OpenApiTypes.DATE),
            OpenApiParameter("date_to", OpenApiTypes.DATE),
            OpenApiParameter("source", str),
        ],
        responses={
            200: inline_serializer("ControlTotalsList", {"results": OutputSerializer(many=True)}),
            400: OpenApiResponse(ErrorSerializer),
        },
    )
    def get(self, request: Request) -> Response:
        q = request.query_params
        try:
            date_from = date.fromisoformat(q["date_from"]) if q.get("date_from") else None
            date_to = date.fromisoformat(q["date_to"]) if q.get("date_to") else None
        except ValueError as exc:
            raise AppError(
                "date_from/date_to must be YYYY-MM-DD.", code=core_codes.VALIDATION_FAILED
            ) from exc
        rows = selectors.control_totals(
            date_from=date_from, date_to=date_to, source=q.get("source") or None
        )
        return Response({"results": self.OutputSerializer(rows, many=True).data})
