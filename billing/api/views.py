"""Billing API: plans and contracts (scope `admin`), invoices and lineage (scope `invoices:read`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import django_filters as df  # type: ignore[import-untyped]
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors
from billing.error_codes import BillingErrorCode
from billing.models import (
    Cadence,
    Contract,
    ContractAmendment,
    DocumentKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PricePlan,
    PricePlanVersion,
)
from billing.services import (
    contract_amend,
    contract_create,
    contract_end,
    price_plan_create,
    price_plan_version_add,
    VersionTerms,
)
from core.api.fields import MoneyField
from core.api.filters import SelectorFilterSet, selector
from core.api.idempotency import IDEMPOTENCY_HEADER, idempotency_key
from core.errors import AppError
from core.models import ApiScope, Currency, Customer
from core.actors import Actor

# --------------------------------------------------------------------------- admin: plans and contracts


class _VersionSerializer(serializers.Serializer[PricePlanVersion]):
    version = serializers.IntegerField(read_only=True)
    effective_from = serializers.DateField()
    components = serializers.ListField(child=serializers.DictField())
    component_meta = serializers.DictField(required=False, default=dict)
    note = serializers.CharField(required=False, default="", allow_blank=True)


class PricePlanListCreateApi(generics.ListAPIView[PricePlan]):
    """Price plans with their versions; POST creates a plan with its first version."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[PricePlan]):
        currency = serializers.CharField(source="currency_id")
        versions = _VersionSerializer(many=True)

        class Meta:
            model = PricePlan
            fields = [
                "id",
                "code",
                "name",
                "currency",
                "default_tax_code",
                "versions",
                "created_at",
            ]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        code = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        currency = serializers.SlugRelatedField(slug_field="code", queryset=Currency.objects.all())
        default_tax_code = serializers.CharField(max_length=32, required=False, default="standard")
        first_version = _VersionSerializer()

    serializer_class = OutputSerializer

    def get_queryset(self) -> QuerySet[PricePlan]:
        return selectors.price_plans()

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        first = v["first_version"]
        plan = price_plan_create(
            code=v["code"],
            name=v["name"],
            currency=v["currency"],
            default_tax_code=v["default_tax_code"],
            first_version=VersionTerms(
                effective_from=first["effective_from"],
                components=first["components"],
                component_meta=first["component_meta"],
                note=first["note"],
            ),
            actor=Actor.for_request(request),
            idempotency_key=idempotency_key(request),
        )
        return Response(
            self.OutputSerializer(selectors.price_plans().get(pk=plan.pk)).data, status=201
        )


class PricePlanVersionCreateApi(APIView):
    """Add a version (new prices from a date) to a plan."""

    required_scope = ApiScope.ADMIN

    @extend_schema(
        request=_VersionSerializer,
        responses={201: _VersionSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request, code: str) -> Response:
        plan = get_object_or_404(PricePlan, code=code)
        data = _VersionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        version = price_plan_version_add(
            plan=plan,
            effective_from=v["effective_from"],
            components=v["components"],
            component_meta=v["component_meta"],
            note=v["note"],
            actor=Actor.for_request(request),
            idempotency_key=idempotency_key(request),
        )
        return Response(_VersionSerializer(version).data, status=201)


class _AmendmentSerializer(serializers.Serializer[ContractAmendment]):
    effective_from = serializers.DateField()
    plan = serializers.SlugRelatedField(
        slug_field="code",
        queryset=PricePlan.objects.all(),
        required=False,
        allow_null=True,
        default=None,
    )
    overrides = serializers.DictField(required=False, allow_null=True, default=None)
    reason = serializers.CharField()


class ContractFilter(SelectorFilterSet):
    """The contract list's parameters; `selectors.contracts` applies them."""

    legal_entity = df.CharFilter(label="legal entity code")
    customer = df.CharFilter(label="customer code")
    select = selector(selectors.contracts)

    class Meta:
        model = Contract
        fields: list[str] = []


class ContractListCreateApi(generics.ListAPIView[Contract]):
    """Contracts (filter by entity or customer code); POST creates one."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[Contract]):
        customer = serializers.CharField(source="customer.code")
        legal_entity = serializers.CharField(source="legal_entity.code")
        plan = serializers.CharField(source="plan.code")
        currency = serializers.CharField(source="currency_id")
        amendments = _AmendmentSerializer(many=True)

        class Meta:
            model = Contract
            fields = [
                "id",
                "code",
                "customer",
                "legal_entity",
                "currency",
                "plan",
                "overrides",
                "cadence",
                "anchor_day",
                "anchor_month",
                "start_date",
                "end_date",
                "prepaid_balance",
                "amendments",
            ]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        code = serializers.SlugField(max_length=64)
        customer_id = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all())
        plan = serializers.SlugRelatedField(slug_field="code", queryset=PricePlan.objects.all())
        start_date = serializers.DateField()
        end_date = serializers.DateField(required=False, allow_null=True, default=None)
        cadence = serializers.ChoiceField(choices=Cadence.choices, default=Cadence.MONTHLY)
        anchor_day = serializers.IntegerField(min_value=1, max_value=28, default=1)
        anchor_month = serializers.IntegerField(min_value=1, max_value=12, default=1)
        overrides = serializers.DictField(required=False, default=dict)
        prepaid_balance = serializers.DecimalField(
            max_digits=18, decimal_places=4, default=Decimal(0), min_value=0
        )

    serializer_class = OutputSerializer
    filterset_class = ContractFilter

    def get_queryset(self) -> QuerySet[Contract]:
        return selectors.contracts()

    @extend_schema(
        request=InputSerializer, responses={201: OutputSerializer}, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        v["customer"] = v.pop("customer_id")
        contract = contract_create(
            actor=Actor.for_request(request), idempotency_key=idempotency_key(request), **v
        )
        return Response(
            self.OutputSerializer(selectors.contracts().get(pk=contract.pk)).data, status=201
        )


class ContractAmendApi(APIView):
    """New terms for a contract from a date (refused inside an invoiced period)."""

    required_scope = ApiScope.ADMIN

    @extend_schema(
        request=_AmendmentSerializer,
        responses={201: _AmendmentSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request, pk: int) -> Response:
        contract = get_object_or_404(Contract, pk=pk)
        data = _AmendmentSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        amendment = contract_amend(
            contract=contract,
            actor=Actor.for_request(request),
            idempotency_key=idempotency_key(request),
            **data.validated_data,
        )
        return Response(_AmendmentSerializer(amendment).data, status=201)


class ContractEndApi(APIView):
    """End a contract on a date (exclusive); refused inside an invoiced period."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        end_date = serializers.DateField()
        reason = serializers.CharField()

    @extend_schema(
        request=InputSerializer,
        responses={200: ContractListCreateApi.OutputSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request: Request, pk: int) -> Response:
        contract = get_object_or_404(Contract, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        contract_end(
            contract=contract,
            actor=Actor.for_request(request),
            idempotency_key=idempotency_key(request),
            **data.validated_data,
        )
        return Response(
            ContractListCreateApi.OutputSerializer(selectors.contracts().get(pk=pk)).data
        )


# --------------------------------------------------------------------------- invoices


class _LineSerializer(serializers.ModelSerializer[InvoiceLine]):
    usage_summary = serializers.SerializerMethodField()
    amount = MoneyField(currency="invoice.currency")
    credited_amount = MoneyField(currency="invoice.currency")
    kind = serializers.CharField(help_text=f"One of: {', '.join(LineKind.values)}.")

    class Meta:
        model = InvoiceLine
        fields = [
            "id",
            "position",
            "kind",
            "component",
            "metric",
            "description",
            "quantity",
            "unit_price",
            "tiers",
            "amount",
            "tax_code",
            "service_start",
            "service_end",
            "usage_summary",
            "credits_line",
            "credited_amount",
        ]

    def get_usage_summary(self, line: InvoiceLine) -> dict[str, Any] | None:
        s = line.usage_summary
        if s is None:
            return None
        return {
            "id": s.pk,
            "metric": s.metric.code,
            "period_start": s.period_start,
            "period_end": s.period_end,
            "revision": s.revision,
            "quantity": str(s.quantity),
            "event_count": s.event_count,
            "closed": s.closed_at is not None,
        }


class _TaxLineSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField()
    tax_code = serializers.CharField()
    jurisdiction = serializers.CharField()
    rate = serializers.DecimalField(max_digits=9, decimal_places=6)
    taxable_amount = MoneyField(currency="invoice.currency")
    amount = MoneyField(currency="invoice.currency")


class _InvoiceSerializer(serializers.ModelSerializer[Invoice]):
    legal_entity = serializers.CharField(source="legal_entity.code")
    customer = serializers.CharField(source="customer.code")
    contract = serializers.CharField(source="contract.code")
    currency = serializers.CharField(source="currency_id")
    subtotal = MoneyField(currency="currency")
    tax_total = MoneyField(currency="currency")
    total = MoneyField(currency="currency")
    credited_total = MoneyField(currency="currency")
    credits = serializers.CharField(source="credits.number", allow_null=True, default=None)
    # plain strings (values listed) so the schema's enum names do not collide across apps
    kind = serializers.CharField(help_text=f"One of: {', '.join(DocumentKind.values)}.")
    status = serializers.CharField(help_text=f"One of: {', '.join(InvoiceStatus.values)}.")

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "status",
            "legal_entity",
            "customer",
            "contract",
            "currency",
            "period_start",
            "period_end",
            "issue_date",
            "subtotal",
            "tax_total",
            "total",
            "credited_total",
            "credits",
            "reason",
            "billing_run",
            "created_at",
            "finalized_at",
            "voided_at",
            "paid_at",
        ]


class InvoiceFilter(SelectorFilterSet):
    """The invoice list's parameters (django-filter validates and documents them; an unknown
    status or kind is a 400 naming the allowed values); `selectors.invoices` applies them."""

    customer = df.CharFilter(label="customer code")
    legal_entity = df.CharFilter(label="legal entity code")
    status = df.ChoiceFilter(choices=InvoiceStatus.choices)
    kind = df.ChoiceFilter(choices=DocumentKind.choices)
    period = df.CharFilter(label="YYYY-MM: documents whose period starts in that month")
    issued_from = df.DateFilter()
    issued_to = df.DateFilter()
    number = df.CharFilter()
    select = selector(selectors.invoices)

    class Meta:
        model = Invoice
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet[Invoice]) -> QuerySet[Invoice]:
        try:
            result: QuerySet[Invoice] = super().filter_queryset(queryset)
        except ValueError as exc:  # a malformed period
            raise AppError(
                str(exc), code=BillingErrorCode.INVALID_PERIOD, extra={"field": "period"}
            ) from None
        return result


class InvoiceListApi(generics.ListAPIView[Invoice]):
    """Invoices, adjustment invoices and credit memos, filtered."""

    required_scope = ApiScope.INVOICES_READ
    serializer_class = _InvoiceSerializer
    filterset_class = InvoiceFilter

    def get_queryset(self) -> QuerySet[Invoice]:
        return selectors.invoices()


class InvoiceDetailApi(APIView):
    """One document with its lines (each with its usage summary) and tax lines."""

    required_scope = ApiScope.INVOICES_READ

    class OutputSerializer(_InvoiceSerializer):
        lines = _LineSerializer(many=True)
        tax_lines = _TaxLineSerializer(many=True)

        class Meta(_InvoiceSerializer.Meta):
            fields = [*_InvoiceSerializer.Meta.fields, "lines", "tax_lines"]

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        try:
            invoice = selectors.invoice_detail(pk=pk)
        except Invoice.DoesNotExist:
            raise AppError(
                f"No invoice {pk}.", code=BillingErrorCode.NOT_FOUND, status=404
            ) from None
        return Response(self.OutputSerializer(invoice).data)


class InvoiceLinesApi(generics.ListAPIView[InvoiceLine]):
    """The lines of one document."""

    required_scope = ApiScope.INVOICES_READ
    serializer_class = _LineSerializer
    filter_backends: list[Any] = []

    def get_queryset(self) -> QuerySet[InvoiceLine]:
        get_object_or_404(Invoice, pk=self.kwargs["pk"])
        return (
            InvoiceLine.objects.filter(invoice_id=self.kwargs["pk"])
            .select_related("usage_summary__metric", "invoice__currency")
            .order_by("position")
        )


# Any: given a page of events with many=True (the stubs type a plain Serializer for one instance).
class _EventSerializer(serializers.Serializer[Any]):
    seq = serializers.IntegerField()
    source = serializers.CharField()  # type: ignore[assignment]  # stubs: clashes with Field.source
    event_id = serializers.CharField()
    timestamp = serializers.DateTimeField()
    value = serializers.DecimalField(max_digits=30, decimal_places=6, allow_null=True)
    properties = serializers.JSONField()


class InvoiceLineLineageApi(APIView):
    """A line, its usage summary and the summary's events (paginated: limit/offset)."""

    required_scope = ApiScope.INVOICES_READ

    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        line = _LineSerializer()
        count = serializers.IntegerField()
        next = serializers.CharField(allow_null=True)
        previous = serializers.CharField(allow_null=True)
        events = _EventSerializer(many=True)

    @extend_schema(
        responses=OutputSerializer,
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
    )
    def get(self, request: Request, pk: int) -> Response:
        try:
            line = selectors.invoice_line(pk=pk)
        except InvoiceLine.DoesNotExist:
            raise AppError(
                f"No invoice line {pk}.", code=BillingErrorCode.NOT_FOUND, status=404
            ) from None
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.line_events(line=line), request, view=self)
        return Response(
            {
                "line": _LineSerializer(line).data,
                "count": paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "events": _EventSerializer(page, many=True).data,
            }
        )


class EventInvoiceLinesApi(APIView):
    """From a usage event (its seq) to the invoice lines it was billed on."""

    required_scope = ApiScope.INVOICES_READ

    # Any: given the lines with many=True (the stubs type a plain Serializer for one instance).
    class OutputSerializer(serializers.Serializer[Any]):
        line_id = serializers.IntegerField(source="pk")
        position = serializers.IntegerField()
        invoice_id = serializers.IntegerField()
        invoice_number = serializers.CharField(source="invoice.number", allow_null=True)
        invoice_status = serializers.CharField(source="invoice.status")
        usage_summary_id = serializers.IntegerField()
        summary_revision = serializers.IntegerField(source="usage_summary.revision")
        currency = serializers.CharField(source="invoice.currency_id")
        amount = MoneyField(currency="invoice.currency")

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, seq: int) -> Response:
        lines = selectors.event_invoice_lines(event_seq=seq)  # NotFound: 404, billing_not_found
        return Response(self.OutputSerializer(lines, many=True).data)
