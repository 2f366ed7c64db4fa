"""Exception-case API: read cases with the queue's filters (`exceptions:read`); act on them
with an `admin` key under the same rules as the pages, once per `Idempotency-Key`."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import AppError, Conflict
from core.models import ApiKey, ApiScope, Customer, LegalEntity
from exceptions.error_codes import ExceptionsErrorCode
from exceptions.models import ExceptionCase, IdempotentRequest
from exceptions.workbench import dispatch, selectors
from exceptions.workbench.filters import CaseFilter
from exceptions.workbench.services import Caller

#: How long a running request holds its Idempotency-Key: longer than any action takes (no action
#: waits on an ERP; a replayed posting is sent by the outbox drain), so only a request whose
#: process died is taken over.
IDEMPOTENCY_LEASE_SECONDS = 120

ACTIONS = [
    "assign",
    "comment",
    "correct",
    "map_customer",
    "reverse",
    "keep_original",
    "take_new_version",
    "retry",
    "dismiss",
    "reopen",
    "approve",
    "reject",
    "correct_date",
    "map_account",
    "settle_adjustment",
]


class CaseOutputSerializer(serializers.ModelSerializer[ExceptionCase]):
    legal_entity: serializers.SlugRelatedField[LegalEntity] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    customer: serializers.SlugRelatedField[Customer] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    assignee: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    currency = serializers.CharField(source="currency_id", allow_null=True)
    connection = serializers.CharField(source="connection_ref")
    amount = serializers.DecimalField(
        source="amount_at_stake", max_digits=20, decimal_places=6, allow_null=True
    )

    class Meta:
        model = ExceptionCase
        fields = [
            "id",
            "kind",
            "status",
            "severity",
            "title",
            "legal_entity",
            "customer",
            "connection",
            "amount",
            "currency",
            "assignee",
            "occurrence_count",
            "first_seen_at",
            "last_seen_at",
            "due_at",
            "resolved_at",
            "resolution",
            "error_code",
            "error_message",
            "source_type",
            "source_id",
            "details",
            "version",
        ]


class CaseListApi(generics.ListAPIView[ExceptionCase]):
    """Exception cases, newest first; the same filters as the queue page (status defaults to
    any open status; `status=all` for every case)."""

    required_scope = ApiScope.EXCEPTIONS_READ
    serializer_class = CaseOutputSerializer
    filterset_class = CaseFilter

    def get_queryset(self) -> QuerySet[ExceptionCase]:
        return selectors.queue_rows(ExceptionCase.objects.all())


class CaseDetailApi(generics.RetrieveAPIView[ExceptionCase]):
    required_scope = ApiScope.EXCEPTIONS_READ
    serializer_class = CaseOutputSerializer

    def get_queryset(self) -> QuerySet[ExceptionCase]:
        return selectors.queue_rows(ExceptionCase.objects.all())


class CaseActionApi(APIView):
    """Take one action on a case (scope `admin`). Send the case's `version` as read; a stale
    one is refused with 409 `case_stale`. With an `Idempotency-Key` header, a retried request
    gets the first answer and is not applied again."""

    required_scope = ApiScope.ADMIN

    class InputSerializer(serializers.Serializer[dict[str, Any]]):
        version = serializers.IntegerField(required=False)
        reason_code = serializers.CharField(required=False, allow_blank=True)
        comment = serializers.CharField(required=False, allow_blank=True)
        body = serializers.CharField(required=False, allow_blank=True)
        assignee = serializers.CharField(required=False, allow_blank=True)
        customer_id = serializers.IntegerField(required=False)
        rejected_id = serializers.IntegerField(required=False)
        corrected = serializers.DictField(required=False)
        posting_date = serializers.CharField(required=False, allow_blank=True)
        account = serializers.CharField(required=False, allow_blank=True)
        key = serializers.CharField(required=False, allow_blank=True)
        amount = serializers.CharField(required=False, allow_blank=True)
        document = serializers.IntegerField(required=False)
        conflict_id = serializers.IntegerField(required=False)

    class OutputSerializer(serializers.Serializer[dict[str, Any]]):
        message = serializers.CharField()
        case = CaseOutputSerializer()

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Any unique string; a retry with the same key is applied once.",
            ),
            OpenApiParameter("action", str, OpenApiParameter.PATH, enum=ACTIONS),
        ],
    )
    def post(self, request: Request, pk: int, action: str) -> Response:
        if action not in ACTIONS:
            raise Http404
        api_key = request.auth
        if not isinstance(api_key, ApiKey):  # HasScope admits only requests made with a key
            raise NotAuthenticated()
        inp = self.InputSerializer(data=request.data)
        inp.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(inp.validated_data)
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            status, body = self._perform(api_key, pk, action, data)
            return Response(body, status=status)
        digest = hashlib.sha256(
            json.dumps([pk, action, request.data], sort_keys=True, default=str).encode()
        ).hexdigest()
        record = self._claim_key(api_key, key[:200], digest)
        if isinstance(record, Response):
            return record
        status, body = self._perform(api_key, pk, action, data)
        IdempotentRequest.objects.filter(pk=record.pk).update(
            status_code=status, response=body, lease_expires_at=None
        )
        return Response(body, status=status)

    def _claim_key(self, api_key: ApiKey, key: str, digest: str) -> IdempotentRequest | Response:
        """The key's record, held for this request; or the answer to give instead (the first
        answer replayed). A key still running is refused until its lease expires, then taken
        over: a process that died mid-action does not block the key for good."""
        now = timezone.now()
        lease = now + timedelta(seconds=IDEMPOTENCY_LEASE_SECONDS)
        try:
            with transaction.atomic():
                return IdempotentRequest.objects.create(
                    api_key=api_key,
                    key=key,
                    request_hash=digest,
                    status_code=0,
                    response={},
                    created_at=now,
                    lease_expires_at=lease,
                )
        except IntegrityError:
            pass
        seen = IdempotentRequest.objects.get(api_key=api_key, key=key)
        if seen.request_hash != digest:
            raise AppError(
                "This Idempotency-Key was used for a different request.",
                code=ExceptionsErrorCode.IDEMPOTENCY_KEY_REUSED,
                status=422,
            )
        if seen.status_code != 0:
            return Response(
                seen.response, status=seen.status_code, headers={"Idempotent-Replay": "true"}
            )
        # Still running, or its process died: take it over only once its lease has expired
        # (one compare-and-set, so two retries at once cannot both take it).
        taken = (
            IdempotentRequest.objects.filter(pk=seen.pk, status_code=0)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
            .update(lease_expires_at=lease)
        )
        if not taken:
            left = max(int(((seen.lease_expires_at or now) - now).total_seconds()), 1)
            raise Conflict(
                f"The first request with this Idempotency-Key is still running; retry in {left} s.",
                code=ExceptionsErrorCode.CASE_STALE,
                extra={"retry_after_seconds": left},
            )
        seen.lease_expires_at = lease
        return seen

    def _perform(
        self, api_key: ApiKey, pk: int, action: str, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        case = ExceptionCase.objects.filter(pk=pk).first()
        if case is None:
            return 404, {"code": "not_found", "message": f"There is no case #{pk}.", "extra": {}}
        try:
            message = dispatch.run(
                case=case, caller=Caller.for_api_key(api_key), action=action, data=data
            )
        except AppError as exc:
            return exc.status_code, exc.as_dict()
        case = selectors.case_get(pk=pk)
        return 200, {"message": message, "case": CaseOutputSerializer(case).data}
