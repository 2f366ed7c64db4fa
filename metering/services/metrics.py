"""Metric definitions and their versions."""

from __future__ import annotations

import re

from datetime import UTC, datetime
from typing import Any

import fastjsonschema
import orjson
from django.db import transaction

from core.actors import Actor
from core.errors import AppError, Conflict
from exceptions.services import audit_record
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringErrorCode
from metering.models import (
    Aggregation,
    MetricDefinition,
    MetricVersion,
)


def _metric_version_snapshot(version: MetricVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "effective_from": version.effective_from.isoformat(),
        "name": version.name,
        "unit": version.unit,
        "aggregation": version.aggregation,
        "value_property": version.value_property,
        "accepts_negative": version.accepts_negative,
        "properties_schema": version.properties_schema,
    }


def _check_metric_version(
    *, aggregation: str, value_property: str, properties_schema: dict[str, Any]
) -> None:
    if aggregation not in Aggregation.values:
        raise AppError(
            f"Unknown aggregation {aggregation!r}; use one of {', '.join(Aggregation.values)}.",
            code=MeteringErrorCode.METRIC_INVALID,
        )
    if aggregation != Aggregation.COUNT and not value_property:
        raise AppError(
            f"A {aggregation} metric needs the property that holds its value.",
            code=MeteringErrorCode.METRIC_INVALID,
        )
    if not isinstance(properties_schema, dict):
        raise AppError(
            "The properties schema must be a JSON object.", code=MeteringErrorCode.METRIC_INVALID
        )
    try:
        # ingest keys its compiled schemas by the orjson text: a number past 64 bits stored here
        # made every later batch answer 500 (issue 12, item 3)
        orjson.dumps(properties_schema, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise AppError(
            f"The properties schema cannot be stored: {exc} (numbers must fit 64 bits).",
            code=MeteringErrorCode.METRIC_INVALID,
        ) from exc
    try:
        fastjsonschema.compile(properties_schema)
    except (fastjsonschema.JsonSchemaDefinitionException, re.error, TypeError, ValueError) as exc:
        raise AppError(
            f"The properties schema is not a valid JSON Schema: {exc}",
            code=MeteringErrorCode.METRIC_INVALID,
        ) from exc


def metric_create(
    *,
    code: str,
    name: str,
    aggregation: str,
    actor: Actor,
    unit: str = "",
    value_property: str = "",
    properties_schema: dict[str, Any] | None = None,
    effective_from: datetime | None = None,
    accepts_negative: bool = False,
) -> MetricVersion:
    """Create a metric with its version 1 (in force from `effective_from`, default: the epoch)."""
    schema = properties_schema or {}
    _check_metric_version(
        aggregation=aggregation, value_property=value_property, properties_schema=schema
    )
    with transaction.atomic():
        if MetricDefinition.objects.filter(code=code).exists():
            raise Conflict(
                f"A metric with code {code!r} exists; add a version instead.",
                code=MeteringErrorCode.METRIC_EXISTS,
            )
        metric = MetricDefinition(code=code)
        metric.full_clean()
        metric.save()
        version = MetricVersion(
            metric=metric,
            version=1,
            effective_from=effective_from or datetime(1970, 1, 1, tzinfo=UTC),
            name=name,
            unit=unit,
            aggregation=aggregation,
            value_property=value_property,
            properties_schema=schema,
            accepts_negative=accepts_negative,
        )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action=MeteringAction.METRIC_CREATE,
            obj=metric,
            after=_metric_version_snapshot(version),
        )
    return version


def metric_version_add(
    *,
    metric: MetricDefinition,
    effective_from: datetime,
    actor: Actor,
    name: str | None = None,
    unit: str | None = None,
    aggregation: str | None = None,
    value_property: str | None = None,
    properties_schema: dict[str, Any] | None = None,
    accepts_negative: bool | None = None,
    reason: str = "",
) -> MetricVersion:
    """A change to a metric: a new version, in force from `effective_from`. Unset fields carry over."""
    with transaction.atomic():
        MetricDefinition.objects.select_for_update().get(pk=metric.pk)
        last = metric.versions.order_by("-version").first()
        assert last is not None
        version = MetricVersion(
            metric=metric,
            version=last.version + 1,
            effective_from=effective_from,
            name=name if name is not None else last.name,
            unit=unit if unit is not None else last.unit,
            aggregation=aggregation if aggregation is not None else last.aggregation,
            value_property=value_property if value_property is not None else last.value_property,
            properties_schema=properties_schema
            if properties_schema is not None
            else last.properties_schema,
            accepts_negative=accepts_negative
            if accepts_negative is not None
            else last.accepts_negative,
        )
        _check_metric_version(
            aggregation=version.aggregation,
            value_property=version.value_property,
            properties_schema=version.properties_schema,
        )
        if metric.versions.filter(effective_from=effective_from).exists():
            raise Conflict(
                "Another version of this metric starts at the same time.",
                code=MeteringErrorCode.METRIC_INVALID,
            )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action=MeteringAction.METRIC_VERSION_ADD,
            obj=metric,
            before=_metric_version_snapshot(last),
            after=_metric_version_snapshot(version),
            reason=reason,
        )
    return version
