"""Core API: who am I, and master data under the `admin` scope."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors
from core.models import ApiKey, Customer, LegalEntity, ApiScope
from core.services import customer_create
from core.actors import Actor


class AnyValidKey(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, ApiKey)


class MeApi(APIView):
    """The calling key: its name and scopes. Any valid key may ask."""

    permission_classes = [AnyValidKey]

    class OutputSerializer(serializers.Serializer[ApiKey]):
        name = serializers.CharField()
        prefix = serializers.CharField()
        scopes = serializers.ListField(child=serializers.ChoiceField(choices=ApiScope.choices))

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        key = request.auth
        if not isinstance(key, ApiKey):  # AnyValidKey admits only requests made with a key
            raise NotAuthenticated()
        return Response(self.OutputSerializer(key).data)


class LegalEntityListApi(generics.ListAPIView[LegalEntity]):
    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[LegalEntity]):
        base_currency = serializers.CharField(source="base_currency_id")

        class Meta:
            model = LegalEntity
            fields = [
                "id",
                "code",
                "name",
                "base_currency",
                "country",
                "timezone",
                "address",
                "tax_id",
            ]

    serializer_class = OutputSerializer
    filterset_fields = ["code", "country"]

    def get_queryset(self) -> QuerySet[LegalEntity]:
        return selectors.legal_entities()


class CustomerListCreateApi(generics.ListAPIView[Customer]):
    """List customers, or create one (scope `admin`)."""

    required_scope = ApiScope.ADMIN

    class OutputSerializer(serializers.ModelSerializer[Customer]):
        legal_entity: serializers.SlugRelatedField[LegalEntity] = serializers.SlugRelatedField(
            slug_field="code", read_only=True
        )

        class Meta:
            model = Customer
            fields = [
                "id",
                "legal_entity",
                "code",
                "name",
                "country",
                "tax_exempt",
                "tax_jurisdiction",
                "email",
                "address",
                "tax_id",
                "external_refs",
                "created_at",
            ]

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        legal_entity = serializers.SlugRelatedField(
            slug_field="code", queryset=LegalEntity.objects.all()
        )
        code = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        country = serializers.CharField(max_length=2, required=False, default="")
        tax_exempt = serializers.BooleanField(required=False, default=False)
        tax_jurisdiction = serializers.CharField(max_length=32, required=False, default="")
        email = serializers.EmailField(required=False, default="")
        address = serializers.CharField(required=False, default="", allow_blank=True)
        tax_id = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
        external_refs = serializers.DictField(
            child=serializers.CharField(), required=False, default=dict
        )

    serializer_class = OutputSerializer
    filterset_fields = ["code", "legal_entity__code"]

    def get_queryset(self) -> QuerySet[Customer]:
        return selectors.customers()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        customer = customer_create(actor=Actor.for_request(request), **data.validated_data)
        return Response(self.OutputSerializer(customer).data, status=201)
