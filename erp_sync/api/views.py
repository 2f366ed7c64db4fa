"""erp_sync API: posting status for client systems (scope `postings:read`); ERP connections,
account and party mappings, and posting replay (scope `admin`)."""

from __future__ import annotations


from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

import django_filters as df  # type: ignore[import-untyped]

from core.actors import Actor
from core.api.filters import IdFilter, SelectorFilterSet, UtcDateTimeFilter, selector
from core.models import ApiScope, Customer, LegalEntity
from erp_sync import selectors
from erp_sync.models import (
    AccountMapping,
    AccountRole,
    ConnectionKind,
    CreditMemoMode,
    DocumentType,
    ErpConnection,
    PartyMapping,
    Posting,
    PostingAttempt,
    PostingMode,
    PostingStatus,
)
from erp_sync.services.connections import CONNECTION_FIELDS
from erp_sync.services import (
    account_mapping_set,
    connection_create,
    connection_update,
    party_mapping_set,
    posting_replay,
)

# --------------------------------------------------------------------------- posting status


class PostingCursorPagination(CursorPagination):
    """Stable order: last change, then id; a cursor survives rows changing behind it."""

    ordering = ("updated_at", "id")
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 500


class _PostingSerializer(serializers.ModelSerializer):
    connection = serializers.CharField(source="connection.name")
    connection_id = serializers.IntegerField()
    legal_entity = serializers.CharField(source="legal_entity.code")
    customer = serializers.CharField(source="customer.code", allow_null=True, default=None)
    currency = serializers.CharField(source="currency_id")
    status = serializers.ChoiceField(choices=PostingStatus.choices)
    document_type = serializers.ChoiceField(choices=DocumentType.choices)
    source_document_id = serializers.IntegerField(allow_null=True)
    journal_entry_id = serializers.IntegerField(source="entry_id", allow_null=True)

    class Meta:
        model = Posting
        fields = [
            "id",
            "connection_id",
            "connection",
            "legal_entity",
            "customer",
            "document_type",
            "external_id",
            "source_document_id",
            "journal_entry_id",
            "amount",
            "currency",
            "status",
            "attempts",
            "next_attempt_at",
            "erp_id",
            "erp_number",
            "erp_state",
            "last_error",
            "last_error_class",
            "created_at",
            "updated_at",
            "posted_at",
        ]


class PostingFilter(SelectorFilterSet):
    """The posting list's parameters (django-filter validates and documents them; an unknown
    status or document type is a 400 naming the allowed values); `selectors.postings` applies
    them."""

    status = df.ChoiceFilter(choices=PostingStatus.choices)
    connection = IdFilter(label="Connection id.")
    document_type = df.ChoiceFilter(choices=DocumentType.choices)
    customer = df.CharFilter(label="Customer code.")
    legal_entity = df.CharFilter(label="Legal entity code.")
    updated_since = UtcDateTimeFilter(label="ISO 8601 date-time")
    arguments = {"connection": "connection_id"}
    select = selector(selectors.postings)

    class Meta:
        model = Posting
        fields: list[str] = []


class PostingListApi(generics.ListAPIView):
    """Postings with their status, oldest change first; filter and page with the cursor."""

    required_scope = ApiScope.POSTINGS_READ
    serializer_class = _PostingSerializer
    pagination_class = PostingCursorPagination

    filterset_class = PostingFilter

    def get_queryset(self):
        return selectors.postings()


class PostingDetailApi(APIView):
    """One posting with every attempt (request and response bodies, secrets redacted)."""

    required_scope = ApiScope.POSTINGS_READ

    class OutputSerializer(_PostingSerializer):
        class AttemptSerializer(serializers.ModelSerializer):
            class Meta:
                model = PostingAttempt
                fields = [
                    "number",
                    "worker",
                    "started_at",
                    "finished_at",
                    "outcome",
                    "error_class",
                    "error_message",
                    "http_status",
                    "latency_ms",
                    "exchanges",
                ]

        attempts_detail = AttemptSerializer(many=True, source="attempt_rows")

        class Meta(_PostingSerializer.Meta):
            fields = [*_PostingSerializer.Meta.fields, "attempts_detail"]

    @extend_schema(responses={200: OutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        try:
            posting = selectors.posting_detail(pk=pk)
        except Posting.DoesNotExist:
            from rest_framework.exceptions import NotFound

            raise NotFound(f"No posting {pk}.") from None
        return Response(self.OutputSerializer(posting).data)


class PostingReplayApi(APIView):
    """Send a failed, dead or held posting again after a correction (audited)."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: _PostingSerializer})
    def post(self, request: Request, pk: int) -> Response:
        posting = get_object_or_404(Posting, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        replayed = posting_replay(
            posting=posting, actor=Actor.for_request(request), reason=data.validated_data["reason"]
        )
        return Response(_PostingSerializer(selectors.posting_detail(pk=replayed.pk)).data)


# --------------------------------------------------------------------------- admin: connections


class _MappingSerializer(serializers.ModelSerializer):
    role = serializers.ChoiceField(choices=AccountRole.choices)
    key = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)

    class Meta:
        model = AccountMapping
        fields = ["role", "key", "account"]


class _ConnectionSerializer(serializers.ModelSerializer):
    """A connection as shown back: the password's variable name and whether it is set here,
    never the password."""

    legal_entity = serializers.CharField(source="legal_entity.code")
    password_set = serializers.SerializerMethodField()
    account_mappings = _MappingSerializer(many=True, read_only=True)

    class Meta:
        model = ErpConnection
        fields = [
            "id",
            "legal_entity",
            *CONNECTION_FIELDS,
            "password_set",
            "account_mappings",
            "created_at",
            "updated_at",
        ]

    def get_password_set(self, conn: ErpConnection) -> bool:
        import os

        return bool(conn.password_env) and conn.password_env in os.environ


class _ConnectionInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=ConnectionKind.choices)
    base_url = serializers.CharField(max_length=300, required=False, allow_blank=True)
    database = serializers.CharField(max_length=100, required=False, allow_blank=True)
    company = serializers.CharField(max_length=200, required=False, allow_blank=True)
    login = serializers.CharField(max_length=100, required=False, allow_blank=True)
    password_env = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="NAME of the environment variable holding the password.",
    )
    enabled = serializers.BooleanField(required=False)
    mode = serializers.ChoiceField(choices=PostingMode.choices, required=False)
    credit_memo_mode = serializers.ChoiceField(choices=CreditMemoMode.choices, required=False)
    external_id_prefix = serializers.SlugField(max_length=16, required=False)
    max_attempts = serializers.IntegerField(min_value=1, max_value=100, required=False)
    backoff_base_seconds = serializers.IntegerField(min_value=0, required=False)
    backoff_cap_seconds = serializers.IntegerField(min_value=0, required=False)
    lease_seconds = serializers.IntegerField(min_value=1, required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, required=False)
    options = serializers.DictField(required=False)


class ConnectionListCreateApi(generics.ListAPIView):
    """ERP connections with their account mappings; POST creates one."""

    required_scope = ApiScope.ADMIN
    serializer_class = _ConnectionSerializer

    class InputSerializer(_ConnectionInput):
        legal_entity = serializers.SlugRelatedField(
            slug_field="code", queryset=LegalEntity.objects.all()
        )

    def get_queryset(self):
        return selectors.connections()

    @extend_schema(request=InputSerializer, responses={201: _ConnectionSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        conn = connection_create(
            legal_entity=v.pop("legal_entity"), actor=Actor.for_request(request), **v
        )
        return Response(
            _ConnectionSerializer(selectors.connections().get(pk=conn.pk)).data, status=201
        )


class ConnectionDetailApi(APIView):
    """One connection; PATCH changes some of its fields."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(_ConnectionInput):
        name = serializers.CharField(max_length=100, required=False)
        kind = serializers.ChoiceField(choices=ConnectionKind.choices, required=False)

    @extend_schema(responses={200: _ConnectionSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(
            _ConnectionSerializer(get_object_or_404(selectors.connections(), pk=pk)).data
        )

    @extend_schema(request=InputSerializer, responses={200: _ConnectionSerializer})
    def patch(self, request: Request, pk: int) -> Response:
        conn = get_object_or_404(ErpConnection, pk=pk)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        connection_update(connection=conn, actor=Actor.for_request(request), **data.validated_data)
        return Response(_ConnectionSerializer(selectors.connections().get(pk=pk)).data)


class AccountMappingSetApi(APIView):
    """Map one of our accounts (role + key) to the ERP's account; releases held postings."""

    required_scope = ApiScope.ADMIN

    @extend_schema(request=_MappingSerializer, responses={200: _MappingSerializer})
    def post(self, request: Request, pk: int) -> Response:
        conn = get_object_or_404(ErpConnection, pk=pk)
        data = _MappingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mapping = account_mapping_set(
            connection=conn, actor=Actor.for_request(request), **data.validated_data
        )
        return Response(_MappingSerializer(mapping).data)


class PartyMappingSetApi(APIView):
    """Map a customer to an existing party in the ERP (instead of creating one)."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer):
        customer = serializers.CharField(help_text="Customer code.")
        erp_party_id = serializers.CharField(max_length=64)

    class OutputSerializer(serializers.ModelSerializer):
        customer = serializers.CharField(source="customer.code")

        class Meta:
            model = PartyMapping
            fields = ["customer", "erp_party_id", "created_by_connector"]

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        conn = get_object_or_404(ErpConnection, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = get_object_or_404(
            Customer, legal_entity_id=conn.legal_entity_id, code=data.validated_data["customer"]
        )
        mapping = party_mapping_set(
            connection=conn,
            customer=customer,
            erp_party_id=data.validated_data["erp_party_id"],
            actor=Actor.for_request(request),
        )
        return Response(self.OutputSerializer(mapping).data)
