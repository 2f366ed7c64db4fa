"""Every write of metering: metrics, identity mappings, ingestion, release,
re-submission and usage summaries. Each opens its transaction and writes its
audit entry inside it.
"""

from __future__ import annotations

import csv
import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from datetime import UTC, datetime, timedelta
from operator import attrgetter, itemgetter
from typing import IO, Any

import fastjsonschema
import orjson
from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from core.errors import AppError, Conflict
from core.models import ApiKey, Customer
from exceptions.models import OPEN_STATUSES, CaseStatus, ExceptionCase
from core.actors import Actor
from exceptions.services import audit_record, case_close, case_open_or_update
from metering import error_codes, event_store, ingest, partitions, reference
from metering.models import (
    Aggregation,
    CustomerMapping,
    DuplicateConflict,
    HeldEvent,
    ImportJob,
    MetricDefinition,
    MetricVersion,
    RejectedEvent,
    RejectedStatus,
    UsageEvent,
    UsageSummary,
)
from metering.summaries import aggregate_window, current_watermark, event_insert_lock, metrics_for

# --- metric definitions -----------------------------------------------------------


def _metric_version_snapshot(version: MetricVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "effective_from": version.effective_from.isoformat(),
        "name": version.name,
        "unit": version.unit,
        "aggregation": version.aggregation,
        "value_property": version.value_property,
        "properties_schema": version.properties_schema,
    }


def _check_metric_version(
    *, aggregation: str, value_property: str, properties_schema: dict[str, Any]
) -> None:
    if aggregation not in Aggregation.values:
        raise AppError(
            f"Unknown aggregation {aggregation!r}; use one of {', '.join(Aggregation.values)}.",
            code=error_codes.METRIC_INVALID,
        )
    if aggregation != Aggregation.COUNT and not value_property:
        raise AppError(
            f"A {aggregation} metric needs the property that holds its value.",
            code=error_codes.METRIC_INVALID,
        )
    if not isinstance(properties_schema, dict):
        raise AppError(
            "The properties schema must be a JSON object.", code=error_codes.METRIC_INVALID
        )
    try:
        fastjsonschema.compile(properties_schema)
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise AppError(
            f"The properties schema is not a valid JSON Schema: {exc}",
            code=error_codes.METRIC_INVALID,
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
                code=error_codes.METRIC_EXISTS,
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
        )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor, action="metric.create", obj=metric, after=_metric_version_snapshot(version)
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
        )
        _check_metric_version(
            aggregation=version.aggregation,
            value_property=version.value_property,
            properties_schema=version.properties_schema,
        )
        if metric.versions.filter(effective_from=effective_from).exists():
            raise Conflict(
                "Another version of this metric starts at the same time.",
                code=error_codes.METRIC_INVALID,
            )
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action="metric.version_add",
            obj=metric,
            before=_metric_version_snapshot(last),
            after=_metric_version_snapshot(version),
            reason=reason,
        )
    return version


# --- usage summaries (the interface billing builds on) ------------------------------


def usage_summarize_window(
    *,
    period_start: datetime,
    period_end: datetime,
    customer_ids: Iterable[int] | None = None,
    metric_codes: Iterable[str] | None = None,
    actor: Actor,
) -> list[UsageSummary]:
    """Bring the open latest revision of every (customer, metric) with usage in the window up to date.

    A closed latest revision with accepted events past its watermark gets
    revision + 1 (open), a full recomputation of the window. Returns the current
    (latest) summaries of the pairs with usage.
    """
    if period_end <= period_start:
        raise AppError("The window must end after it starts.", code="invalid_window")
    customers = list(customer_ids) if customer_ids is not None else None
    metrics = metrics_for(metric_codes)
    watermark = current_watermark()
    aggregates = aggregate_window(
        period_start=period_start,
        period_end=period_end,
        watermark=watermark,
        metrics=metrics,
        customer_ids=customers,
    )
    now = timezone.now()
    created: list[UsageSummary] = []
    updated: list[UsageSummary] = []
    current: list[UsageSummary] = []
    with transaction.atomic():
        existing = UsageSummary.objects.select_for_update().filter(
            period_start=period_start, period_end=period_end, metric__in=metrics
        )
        if customers is not None:
            existing = existing.filter(customer_id__in=customers)
        latest: dict[tuple[int, int], UsageSummary] = {}
        for s in existing.order_by("revision"):
            latest[(s.customer_id, s.metric_id)] = s
        for agg in aggregates:
            summary = latest.get((agg.customer_id, agg.metric_id))
            fields = {
                "aggregation": agg.aggregation,
                "quantity": agg.quantity,
                "event_count": agg.event_count,
                "watermark_seq": watermark,
                "computed_at": now,
            }
            if summary is None or (
                summary.closed_at is not None and agg.max_seq > summary.watermark_seq
            ):
                new = UsageSummary(
                    customer_id=agg.customer_id,
                    metric_id=agg.metric_id,
                    period_start=period_start,
                    period_end=period_end,
                    revision=0 if summary is None else summary.revision + 1,
                    **fields,
                )
                created.append(new)
                current.append(new)
            elif summary.closed_at is None:
                if (summary.quantity, summary.event_count, summary.aggregation) != (
                    agg.quantity,
                    agg.event_count,
                    agg.aggregation,
                ) or summary.watermark_seq != watermark:
                    for k, v in fields.items():
                        setattr(summary, k, v)
                    updated.append(summary)
                current.append(summary)
            else:
                current.append(summary)
        UsageSummary.objects.bulk_create(created, batch_size=2000)
        UsageSummary.objects.bulk_update(
            updated,
            ["aggregation", "quantity", "event_count", "watermark_seq", "computed_at"],
            batch_size=2000,
        )
        if created or updated:
            audit_record(
                actor=actor,
                action="usage.summarize",
                object_type="metering.usagesummary",
                object_id=f"{period_start:%Y%m%dT%H%M%S}-{period_end:%Y%m%dT%H%M%S}",
                object_repr=f"usage {period_start:%Y-%m-%d %H:%M}..{period_end:%Y-%m-%d %H:%M}",
                after={
                    "created": len(created),
                    "updated": len(updated),
                    "watermark_seq": watermark,
                    "revisions": sorted({s.revision for s in created}),
                },
            )
    return current


def usage_summaries_close(*, summary_ids: Iterable[int], actor: Actor) -> int:
    """Freeze summaries (billing finalized invoices on them). Returns how many were closed now."""
    ids = sorted(set(summary_ids))
    if not ids:
        return 0
    with transaction.atomic():
        open_ids = list(
            UsageSummary.objects.select_for_update()
            .filter(pk__in=ids, closed_at__isnull=True)
            .values_list("pk", flat=True)
        )
        if not open_ids:
            return 0
        closed = UsageSummary.objects.filter(pk__in=open_ids).update(closed_at=timezone.now())
        audit_record(
            actor=actor,
            action="usage.summaries_close",
            object_type="metering.usagesummary",
            object_id=str(open_ids[0]) if len(open_ids) == 1 else f"{open_ids[0]}..{open_ids[-1]}",
            after={"closed_ids": open_ids},
        )
    return closed


# --- ingestion ------------------------------------------------------------------------


@dataclass
class IngestResult:
    """Per-event outcomes (input order) and the counts."""

    results: list[dict[str, Any]]
    counts: dict[str, int]
    batch_id: str
    valid: list[ingest.Candidate] = field(default_factory=list)  # the valid events, stored or not

    @cached_property
    def candidates(self) -> dict[int, ingest.Candidate]:
        """index -> the valid event (accepted, held or duplicate of a stored one), for adapters'
        echoes; built on first use (the native endpoint never asks)."""
        return {c.index: c for c in self.valid}


# Rounds a batch runs with this process's reference copy before reading it under the lock.
STALE_RETRIES = 2


def usage_ingest(
    *,
    items: list[tuple[Any, Any]],
    actor: Actor,
    api_key: ApiKey | None = None,
    channel: str = "native",
    store_rejections: bool = True,
    now: datetime | None = None,
) -> IngestResult:
    """Ingest canonical events (each with its raw payload): validate, de-duplicate, map, store.

    Outcome per event: accepted, duplicate, rejected (code, message) or held.
    Writes one audit entry for the batch, the control totals, the dead letter
    and the exception cases, all in one transaction.

    The batch is validated and mapped with this process's copy of the metric
    catalog and mappings (metering.reference) before the transaction opens; if
    the transaction finds that copy stale it rolls back and the batch runs again
    with a fresh one. After STALE_RETRIES such rounds (reference data changing
    under a stream of batches) the last round reads it inside the transaction,
    under the mapping lock. Keys are first stored the optimistic way; a batch that
    races another for a key runs again the safe way (event_store).
    """
    now = now or timezone.now()
    args = {
        "items": items,
        "actor": actor,
        "api_key": api_key,
        "channel": channel,
        "store_rejections": store_rejections,
        "now": now,
    }
    optimistic = True  # event_store's look-up-then-insert; after a KeyRace, ON CONFLICT
    ref, validated = None, None
    for _ in range(STALE_RETRIES):
        if validated is None:  # first round, or the reference data changed
            ref = reference.current()
            validated = _validate(items, ref, now)
        try:
            with transaction.atomic():
                reference.lock_for_ingest()
                return _ingest_store(validated, ref=ref, optimistic=optimistic, **args)
        except reference.Stale:
            reference.invalidate()
            validated = None
        except event_store.KeyRace:
            optimistic = False
    reference.invalidate()  # the last round reads the reference data after the lock
    with transaction.atomic():
        reference.lock_for_ingest()
        validated = _validate(items, reference.current(), now)
        return _ingest_store(validated, ref=None, optimistic=False, **args)


_TS_ISO, _MONTH = attrgetter("ts_iso"), itemgetter(slice(0, 7))


def _validate(
    items: list[tuple[Any, Any]], ref: reference.Reference, now: datetime
) -> ingest.Validated:
    conf = settings.LEDGERLINE
    validated = ingest.validate_batch(
        items,
        ref.catalog,
        now=now,
        max_age=timedelta(days=conf["EVENT_MAX_AGE_DAYS"]),
        max_future=timedelta(seconds=conf["EVENT_MAX_FUTURE_SECONDS"]),
    )
    reference.resolve_customers(ref, validated.candidates)
    if connection.vendor == "postgresql":
        # "YYYY-MM" of each candidate (a held one's month too: a partition early is harmless)
        months = set(map(_MONTH, map(_TS_ISO, validated.candidates)))
        partitions.ensure_months({(int(m[:4]), int(m[5:7])) for m in months})
    return validated


def _ingest_store(
    validated: ingest.Validated,
    *,
    ref: reference.Reference | None,
    optimistic: bool,
    items: list[tuple[Any, Any]],
    actor: Actor,
    api_key: ApiKey | None,
    channel: str,
    store_rejections: bool,
    now: datetime,
) -> IngestResult:
    """The database side of usage_ingest, inside its transaction (locks taken). `ref`: the
    reference data the batch was validated with, to confirm (None: read under the lock)."""
    cands = validated.candidates
    results: list[dict[str, Any] | None] = [None] * len(items)
    counts = {"received": len(items), "accepted": 0, "duplicate": 0, "rejected": 0, "held": 0}
    tally: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    day = now.astimezone(UTC).date().isoformat()
    batch_id = uuid.uuid4().hex
    api_key_id = api_key.pk if api_key is not None else None

    stored = event_store.insert(
        cands,
        received_at=now,
        api_key_id=api_key_id,
        expect_generation=ref.generation if ref is not None else None,
        optimistic=optimistic,
    )
    inserted, conflicts = stored.inserted, stored.conflicts
    held = [c for c in cands if c.customer_id is None and c.key in inserted]
    if held:
        HeldEvent.objects.bulk_create(
            [
                HeldEvent(
                    source=c.source,
                    event_id=c.event_id,
                    customer_ref=c.customer_ref,
                    metric_id=c.version.metric_id,
                    metric_version_id=c.version.id,
                    timestamp=c.timestamp,
                    value=c.value,
                    properties=c.properties,
                    received_at=now,
                    api_key_id=api_key_id,
                )
                for c in held
            ],
            batch_size=1000,
        )
    conflict_raws: list[ingest.Candidate] = (
        [c for c in cands if c.key in conflicts] if conflicts else []
    )
    outcomes: list[tuple[str, str]] = []  # (source, status) per event, counted at the end
    for c in cands:
        if c.key not in inserted:
            status = ingest.DUPLICATE
        elif c.customer_id is None:
            status = ingest.HELD
        else:
            status = ingest.ACCEPTED
        results[c.index] = {"index": c.index, "event_id": c.event_id, "status": status}
        outcomes.append((c.source, status))
    by_index = {c.index: c for c in cands} if validated.in_batch_duplicates else {}
    for index, (first, same) in validated.in_batch_duplicates.items():
        orig = by_index[first]
        results[index] = {"index": index, "event_id": orig.event_id, "status": ingest.DUPLICATE}
        outcomes.append((orig.source, ingest.DUPLICATE))
        if not same:
            conflict_raws.append(
                ingest.Candidate(
                    index=index,
                    source=orig.source,
                    event_id=orig.event_id,
                    customer_ref="",
                    version=orig.version,
                    timestamp=orig.timestamp,
                    value=None,
                    properties={},
                    content_hash="",
                    raw=items[index][1],
                )
            )
    for rej in validated.rejections:
        results[rej.index] = {
            "index": rej.index,
            "event_id": rej.event_id or None,
            "status": ingest.REJECTED,
            "code": rej.code,
            "message": rej.message,
        }
        outcomes.append((rej.source, ingest.REJECTED))
    for (source, status), n in Counter(outcomes).items():
        tally[(source, day)][status] += n
    for per_status in tally.values():
        for status, n in per_status.items():
            counts[status] += n
    if store_rejections and validated.rejections:
        _dead_letter(validated.rejections, actor=actor, api_key_id=api_key_id, now=now)
    if held:
        _open_unmapped_cases(held, actor=actor)
    if conflict_raws:
        _record_conflicts(conflict_raws, actor=actor, api_key_id=api_key_id, now=now)
    if store_rejections or counts["accepted"] or counts["held"] or counts["duplicate"]:
        _tally_add(tally)
    audit_record(
        actor=actor,
        action="usage.ingest",
        object_type="metering.ingestbatch",
        object_id=batch_id,
        object_repr=f"{channel} batch of {len(items)}",
        after={**counts, "channel": channel, "sources": sorted({s for s, _ in tally})[:20]},
    )
    return IngestResult(
        results=[r for r in results if r is not None],
        counts=counts,
        batch_id=batch_id,
        valid=cands,
    )


def _dead_letter(
    rejections: list[ingest.Rejection], *, actor: Actor, api_key_id: int | None, now: datetime
) -> list[RejectedEvent]:
    groups: dict[tuple[str, str], list[ingest.Rejection]] = defaultdict(list)
    for rej in rejections:
        groups[(rej.source, rej.code)].append(rej)
    rows: list[RejectedEvent] = []
    for (source, code), rejs in sorted(groups.items()):
        case, _ = case_open_or_update(
            kind=error_codes.CASE_REJECTED,
            fingerprint=f"metering:rejected:{source}:{code}",
            title=f"Usage events from {source or 'an unidentified source'} rejected: {code}",
            actor=actor,
            error_code=code,
            error_message=rejs[0].message,
            occurrences=len(rejs),
            details={"source": source, "code": code, "last_event_id": rejs[-1].event_id},
        )
        for rej in rejs:
            raw_json, raw_text = _raw_for_storage(rej.raw)
            rows.append(
                RejectedEvent(
                    received_at=now,
                    api_key_id=api_key_id,
                    source=rej.source,
                    event_id=rej.event_id,
                    code=rej.code,
                    message=rej.message,
                    raw=raw_json,
                    raw_text=raw_text,
                    case=case,
                )
            )
    return RejectedEvent.objects.bulk_create(rows, batch_size=1000)


def _raw_for_storage(raw: Any) -> tuple[Any, str]:
    """(JSON, text) to keep of a payload. PostgreSQL stores no NUL in text or jsonb: such
    payloads are kept as their JSON text with NUL escaped."""
    if isinstance(raw, ingest.NativeEvent):
        raw = ingest.as_sent(raw)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return None, raw.replace("\x00", "\\u0000")
    try:
        text = orjson.dumps(raw).decode()
    except TypeError:
        return None, repr(raw)
    if "\\u0000" in text:
        return None, text
    return raw, ""


def dead_letter_request(
    *, code: str, message: str, raw: Any, actor: Actor, api_key: ApiKey | None, source: str = ""
) -> RejectedEvent:
    """Keep a request nothing could be read from (not JSON, wrong shape, too large) as one dead letter."""
    now = timezone.now()
    with transaction.atomic():
        rejected = _dead_letter(
            [ingest.Rejection(0, source, "", code, message, raw)],
            actor=actor,
            api_key_id=api_key.pk if api_key else None,
            now=now,
        )[0]
        _tally_add({(source, now.astimezone(UTC).date().isoformat()): {"rejected": 1}})
        audit_record(
            actor=actor,
            action="usage.ingest_refused",
            obj=rejected,
            after={"code": code},
            reason=message[:500],
        )
    return rejected


def _open_unmapped_cases(held: list[ingest.Candidate], *, actor: Actor) -> None:
    groups: dict[tuple[str, str], int] = defaultdict(int)
    for c in held:
        groups[(c.source, c.customer_ref)] += 1
    for (source, ref), n in sorted(groups.items()):
        case_open_or_update(
            kind=error_codes.CASE_UNMAPPED,
            fingerprint=unmapped_fingerprint(source, ref),
            title=f"No customer mapped for {source}:{ref}; its usage is held",
            actor=actor,
            error_code=error_codes.CASE_UNMAPPED,
            occurrences=n,
            error_message=f"Events from source '{source}' for customer_ref '{ref}' are held until a "
            "customer mapping is added.",
            details={"source": source, "customer_ref": ref},
        )


def unmapped_fingerprint(source: str, customer_ref: str) -> str:
    return f"metering:unmapped:{source}:{customer_ref}"


def _record_conflicts(
    cands: list[ingest.Candidate], *, actor: Actor, api_key_id: int | None, now: datetime
) -> None:
    groups: dict[str, list[ingest.Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.source].append(c)
    rows = []
    for source, group in sorted(groups.items()):
        case, _ = case_open_or_update(
            kind=error_codes.CASE_CONFLICT,
            fingerprint=f"metering:conflict:{source}",
            title=f"Events from {source} re-sent with different content",
            actor=actor,
            error_code=error_codes.CASE_CONFLICT,
            occurrences=len(group),
            error_message="An event id already received was sent again with different content; the "
            "original stands until finance decides.",
            details={"source": source, "last_event_id": group[-1].event_id},
        )
        rows += [
            DuplicateConflict(
                source=source,
                event_id=c.event_id,
                received_at=now,
                api_key_id=api_key_id,
                raw=_conflict_raw(c.raw),
                case=case,
            )
            for c in group
        ]
    DuplicateConflict.objects.bulk_create(rows, batch_size=1000)


def _conflict_raw(raw: Any) -> Any:
    """The JSON a DuplicateConflict keeps: the payload, or its text when it is not storable JSON."""
    raw_json, raw_text = _raw_for_storage(raw)
    return raw_json or {"raw": raw_text}


TALLY_COLUMNS = ("accepted", "duplicate", "rejected", "held", "released")


def _tally_add(tally: dict[tuple[str, str], dict[str, int]]) -> None:
    """Add to the control totals (one upsert per source and day, in key order: no deadlocks)."""
    if not tally:
        return
    cols = ", ".join(TALLY_COLUMNS)
    updates = ", ".join(f"{c} = metering_ingesttally.{c} + excluded.{c}" for c in TALLY_COLUMNS)
    sql = (
        f"INSERT INTO metering_ingesttally (source, day, {cols}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (source, day) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cur:
        for (source, day), c in sorted(tally.items()):
            cur.execute(sql, [source, day, *(c.get(col, 0) for col in TALLY_COLUMNS)])


# --- identity mapping and release of held events ----------------------------------------


def customer_mapping_create(
    *, source: str, customer_ref: str, customer: Customer, actor: Actor
) -> CustomerMapping:
    """Map (source, customer_ref) to a customer and release the events held for it."""
    source, customer_ref = source.strip(), customer_ref.strip()
    if not source or not customer_ref:
        raise AppError(
            "A mapping needs a source and a customer_ref.", code=error_codes.MAPPING_INVALID
        )
    with transaction.atomic():
        reference.lock_mappings()  # no ingest transaction runs from here to commit
        if CustomerMapping.objects.filter(source=source, customer_ref=customer_ref).exists():
            raise Conflict(
                f"{source}:{customer_ref} is already mapped.", code=error_codes.MAPPING_EXISTS
            )
        mapping = CustomerMapping(source=source, customer_ref=customer_ref, customer=customer)
        mapping.full_clean()
        mapping.save()
        audit_record(
            actor=actor,
            action="mapping.create",
            obj=mapping,
            after={"source": source, "customer_ref": customer_ref, "customer_id": customer.pk},
        )
        held_events_release(mapping=mapping, actor=actor)
    return mapping


def held_events_release(*, mapping: CustomerMapping, actor: Actor) -> int:
    """Move the held events of a mapped (source, customer_ref) into the event table, into their periods."""
    with transaction.atomic():
        held = list(
            HeldEvent.objects.select_for_update()
            .filter(
                source=mapping.source, customer_ref=mapping.customer_ref, released_at__isnull=True
            )
            .order_by("id")
        )
        if held:
            if connection.vendor == "postgresql":
                partitions.ensure_months({(h.timestamp.year, h.timestamp.month) for h in held})
            event_insert_lock()
            now = timezone.now()
            events = UsageEvent.objects.bulk_create(
                [
                    UsageEvent(
                        source=h.source,
                        event_id=h.event_id,
                        customer_ref=h.customer_ref,
                        customer_id=mapping.customer_id,
                        metric_id=h.metric_id,
                        metric_version_id=h.metric_version_id,
                        timestamp=h.timestamp,
                        value=h.value,
                        properties=h.properties,
                        received_at=h.received_at,
                        api_key_id=h.api_key_id,
                        held_event=h.pk,
                    )
                    for h in held
                ],
                batch_size=1000,
            )
            for h, e in zip(held, events, strict=True):
                h.released_at, h.released_seq, h.customer_id = now, e.seq, mapping.customer_id
            HeldEvent.objects.bulk_update(
                held, ["released_at", "released_seq", "customer"], batch_size=1000
            )
            per_day: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for h in held:
                per_day[(h.source, h.received_at.astimezone(UTC).date().isoformat())][
                    "released"
                ] += 1
            _tally_add(per_day)
            audit_record(
                actor=actor,
                action="usage.release",
                obj=mapping,
                after={
                    "released": len(held),
                    "customer_id": mapping.customer_id,
                    "seq_from": events[0].seq,
                    "seq_to": events[-1].seq,
                },
            )
        case = ExceptionCase.objects.filter(
            fingerprint=unmapped_fingerprint(mapping.source, mapping.customer_ref),
            status__in=OPEN_STATUSES,
        ).first()
        if case is not None:
            case_close(
                case=case,
                actor=actor,
                status=CaseStatus.RESOLVED,
                resolution=f"Mapped to customer {mapping.customer}; {len(held)} held event(s) released.",
            )
    return len(held)


# --- dead letter: correct and re-submit ------------------------------------------------------


def rejected_event_resubmit(
    *, rejected: RejectedEvent, corrected: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    """Re-submit a corrected rejected event (canonical shape). Returns its outcome.

    Accepted, held or duplicate: the dead letter is marked re-submitted.
    Rejected again: nothing changes, the error comes back.
    """
    with transaction.atomic():
        locked = RejectedEvent.objects.select_for_update().get(pk=rejected.pk)
        if locked.status != RejectedStatus.OPEN:
            raise Conflict(
                "This rejected event was already re-submitted.", code=error_codes.REJECTED_NOT_OPEN
            )
        result = usage_ingest(
            items=[(corrected, corrected)],
            actor=actor,
            api_key=None,
            channel="resubmit",
            store_rejections=False,
        )
        outcome = result.results[0]
        if outcome["status"] == ingest.REJECTED:
            return outcome
        locked.status = RejectedStatus.RESUBMITTED
        locked.resubmitted_at = timezone.now()
        locked.resubmission_outcome = outcome["status"]
        locked.save(update_fields=["status", "resubmitted_at", "resubmission_outcome"])
        audit_record(
            actor=actor,
            action="usage.resubmit",
            obj=locked,
            before={"raw": locked.raw or locked.raw_text},
            after={"event": corrected, "outcome": outcome["status"]},
        )
    return outcome


# --- scheduled refresh -------------------------------------------------------------------------

LATE_USAGE_LOOKBACK_DAYS = (
    40  # closed windows this recent are checked for late events (EVENT_MAX_AGE + margin)
)


def usage_summaries_refresh(*, actor: Actor, now: datetime | None = None) -> int:
    """Bring open summaries up to date, and open revision+1 of recently closed windows with late events.

    Incremental: a window is recomputed only if an event arrived past its
    lowest watermark. Returns how many windows were recomputed. Safe to run twice.
    """
    now = now or timezone.now()
    windows: dict[tuple[datetime, datetime], int] = {}
    open_rows = (
        UsageSummary.objects.filter(closed_at__isnull=True)
        .values("period_start", "period_end")
        .annotate(low=Min("watermark_seq"))
        .order_by()
    )
    for row in open_rows:
        windows[(row["period_start"], row["period_end"])] = row["low"]
    closed_rows = (
        UsageSummary.objects.filter(
            closed_at__isnull=False, period_end__gte=now - timedelta(days=LATE_USAGE_LOOKBACK_DAYS)
        )
        .values("period_start", "period_end")
        .annotate(low=Min("watermark_seq"))
        .order_by()
    )
    for row in closed_rows:
        key = (row["period_start"], row["period_end"])
        windows[key] = min(windows.get(key, row["low"]), row["low"])
    done = 0
    for (start, end), low in sorted(windows.items()):
        if UsageEvent.objects.filter(timestamp__gte=start, timestamp__lt=end, seq__gt=low).exists():
            usage_summarize_window(period_start=start, period_end=end, actor=actor)
            done += 1
    return done


# --- CSV import (upload page and `manage.py import_usage`) ------------------------------------

CSV_COLUMNS = ("event_id", "source", "customer_ref", "metric", "timestamp")
CSV_BATCH = 1000  # rows per ingest batch: one transaction and one audit entry each
ERROR_REPORT_HEADER = ["row", "event_id", "status", "code", "message"]


@dataclass
class ImportProgress:
    rows: int = 0
    bytes_read: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    held: int = 0


def _csv_lines(fileobj: IO[bytes], progress: ImportProgress) -> Iterator[str]:
    for raw in fileobj:
        progress.bytes_read += len(raw)
        yield raw.decode(
            "utf-8-sig" if progress.bytes_read == len(raw) else "utf-8", errors="replace"
        )


def _csv_event(row: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {k: (row.get(k) or "").strip() for k in CSV_COLUMNS}
    value = (row.get("value") or "").strip()
    event["value"] = value or None
    props = (row.get("properties") or "").strip()
    if props:
        try:
            event["properties"] = orjson.loads(props)
        except orjson.JSONDecodeError:
            event["_reject"] = (
                error_codes.INVALID_FIELD,
                "The properties column is not valid JSON.",
            )
    return event


def usage_import_stream(
    *,
    fileobj: IO[bytes],
    actor: Actor,
    error_report: IO[str],
    api_key: ApiKey | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportProgress:
    """Ingest a CSV file batch by batch, never holding the whole file in memory.

    Columns: event_id, source, customer_ref, metric, timestamp[, value][, properties (JSON)].
    Every row not accepted is written to `error_report` with its row number, code and message.
    """
    progress = ImportProgress()
    reader = csv.DictReader(_csv_lines(fileobj, progress))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise AppError(
            f"The CSV file lacks the column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(CSV_COLUMNS)}[, value, properties].",
            code=error_codes.IMPORT_INVALID,
        )
    writer = csv.writer(error_report)
    writer.writerow(ERROR_REPORT_HEADER)
    batch: list[tuple[Any, Any]] = []
    first_row = 2  # the header is row 1

    def flush() -> None:
        nonlocal batch, first_row
        if not batch:
            return
        result = usage_ingest(items=batch, actor=actor, api_key=api_key, channel="csv")
        for r in result.results:
            if r["status"] != ingest.ACCEPTED:
                writer.writerow(
                    [
                        first_row + r["index"],
                        r["event_id"] or "",
                        r["status"],
                        r.get("code", ""),
                        r.get("message", ""),
                    ]
                )
        for k in ("accepted", "duplicate", "rejected", "held"):
            setattr(progress, k, getattr(progress, k) + result.counts[k])
        progress.rows += len(batch)
        first_row += len(batch)
        batch = []
        if on_progress is not None:
            on_progress(progress)

    for row in reader:
        batch.append((_csv_event(row), dict(row)))
        if len(batch) >= CSV_BATCH:
            flush()
    flush()
    return progress


def import_job_create(*, upload: Any, user: Any, actor: Actor) -> ImportJob:
    """Keep the uploaded file and queue its ingestion (after commit)."""
    if not upload.name.lower().endswith(".csv"):
        raise AppError("Upload a .csv file.", code=error_codes.IMPORT_INVALID)
    with transaction.atomic():
        job = ImportJob(filename=upload.name[:255], total_bytes=upload.size or 0, created_by=user)
        job.file.save(f"{uuid.uuid4().hex}.csv", upload, save=False)
        job.save()
        audit_record(
            actor=actor,
            action="usage.import_queued",
            obj=job,
            after={"filename": job.filename, "bytes": job.total_bytes},
        )
        transaction.on_commit(lambda: _enqueue_import(job.pk))
    return job


def _enqueue_import(job_id: int) -> None:
    from django_q.tasks import async_task

    async_task("metering.tasks.run_import_job", job_id, task_name=f"metering-import-{job_id}")


def import_job_run(*, job_id: int, actor: Actor) -> ImportJob:
    """Run a queued import (safe to run twice: a finished job is left alone, events are exactly-once)."""
    job = ImportJob.objects.get(pk=job_id)
    if job.status == ImportJob.Status.DONE:
        return job
    ImportJob.objects.filter(pk=job.pk).update(status=ImportJob.Status.RUNNING)

    def save_progress(p: ImportProgress) -> None:
        ImportJob.objects.filter(pk=job.pk).update(
            processed_bytes=p.bytes_read,
            rows=p.rows,
            accepted=p.accepted,
            duplicate=p.duplicate,
            rejected=p.rejected,
            held=p.held,
        )

    report = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
    status, message = ImportJob.Status.DONE, ""
    progress = ImportProgress()
    try:
        with job.file.open("rb") as fh:
            progress = usage_import_stream(
                fileobj=fh, actor=actor, error_report=report, on_progress=save_progress
            )
    except AppError as exc:
        status, message = ImportJob.Status.FAILED, exc.message
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job.pk)
        job.status, job.message, job.finished_at = status, message, timezone.now()
        job.rows, job.accepted, job.duplicate = progress.rows, progress.accepted, progress.duplicate
        job.rejected, job.held = progress.rejected, progress.held
        job.processed_bytes = (
            job.total_bytes if status == ImportJob.Status.DONE else progress.bytes_read
        )
        report.seek(0)
        job.error_report.save(f"import-{job.pk}-errors.csv", File(report), save=False)
        report.close()
        job.save()
        audit_record(
            actor=actor,
            action="usage.import_finished",
            obj=job,
            after={
                "status": status,
                "rows": job.rows,
                "accepted": job.accepted,
                "duplicate": job.duplicate,
                "rejected": job.rejected,
                "held": job.held,
            },
            reason=message,
        )
    return job
