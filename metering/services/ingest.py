"""Usage ingestion: validate, de-duplicate, map and store a batch in one transaction, with its
control totals, dead letter, exception cases and audit entry; re-submission of a rejected event."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, NotRequired, TypedDict

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import pgcopy
from core.actors import Actor
from core.errors import Conflict
from core.models import ApiKey
from exceptions.services import (
    AuditSpec,
    CaseOpening,
    audit_record,
    audit_record_many,
    cases_lock,
    cases_open_or_update_many,
)
from metering import event_store, ingest, partitions, reference
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringCaseKind, MeteringErrorCode
from metering.models import (
    DuplicateConflict,
    HeldEvent,
    RejectedEvent,
    RejectedStatus,
)
from metering.services.dead_letter import (
    _dead_letter,
    _raw_for_storage,
    _rejected_openings,
)
from metering.services.tallies import _tally_add


class IngestItem(NamedTuple):
    """One event to ingest: as decoded (a typed NativeEvent, or the canonical dict an adapter
    made), and the payload as sent, kept in the dead letter or a conflict if it comes to that.
    A plain (event, raw) tuple is taken too."""

    event: Any
    raw: Any


class EventOutcome(TypedDict):
    """One event's answer, as the ingest API renders it."""

    index: int
    event_id: str | None
    status: str  # ingest.ACCEPTED, DUPLICATE, REJECTED or HELD
    code: NotRequired[str]  # a rejection's error code (metering.error_codes)
    message: NotRequired[str]


class IngestCounts(TypedDict):
    """A batch's control totals: received = accepted + duplicate + rejected + held."""

    received: int
    accepted: int
    duplicate: int
    rejected: int
    held: int


@dataclass
class IngestResult:
    """Per-event outcomes (input order) and the counts."""

    results: list[EventOutcome]
    counts: IngestCounts
    batch_id: str
    valid: list[ingest.Candidate] = field(default_factory=list)  # the valid events, stored or not
    conflicting: set[int] = field(default_factory=set)  # duplicates sent with other content
    in_batch: set[int] = field(default_factory=set)  # duplicates of an earlier event of the batch

    @cached_property
    def candidates(self) -> dict[int, ingest.Candidate]:
        """index -> the valid event (accepted, held or duplicate of a stored one), for adapters'
        echoes; built on first use (the native endpoint never asks)."""
        return {c.index: c for c in self.valid}


# Rounds a batch runs with this process's reference copy before reading it under the lock.
STALE_RETRIES = 2


class _StoreArgs(TypedDict):
    """usage_ingest's arguments that every round of _ingest_store takes unchanged."""

    items: Sequence[IngestItem | tuple[Any, Any]]
    actor: Actor
    api_key: ApiKey | None
    channel: str
    store_rejections: bool
    now: datetime


def usage_ingest(
    *,
    items: Sequence[IngestItem | tuple[Any, Any]],
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
    args: _StoreArgs = {
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
            validated = _validate(items, ref, now, channel)
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
        validated = _validate(items, reference.current(), now, channel)
        return _ingest_store(validated, ref=None, optimistic=False, **args)


_TS_ISO, _MONTH = attrgetter("ts_iso"), itemgetter(slice(0, 7))


def _validate(
    items: Sequence[IngestItem | tuple[Any, Any]],
    ref: reference.Reference,
    now: datetime,
    channel: str,
) -> ingest.Validated:
    conf = settings.LEDGERLINE
    validated = ingest.validate_batch(
        items,
        ref.catalog,
        now=now,
        max_age=timedelta(days=conf["EVENT_MAX_AGE_DAYS"]),
        max_future=timedelta(seconds=conf["EVENT_MAX_FUTURE_SECONDS"]),
        field_names=ingest.CLOUDEVENT_NAMES if channel.startswith("cloudevents") else None,
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
    items: Sequence[IngestItem | tuple[Any, Any]],
    actor: Actor,
    api_key: ApiKey | None,
    channel: str,
    store_rejections: bool,
    now: datetime,
) -> IngestResult:
    """The database side of usage_ingest, inside its transaction (locks taken). `ref`: the
    reference data the batch was validated with, to confirm (None: read under the lock)."""
    cands = validated.candidates
    results: list[EventOutcome | None] = [None] * len(items)
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
        _store_held(held, now=now, api_key_id=api_key_id)
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
    per_status: Counter[str] = Counter()
    for day_counts in tally.values():
        per_status.update(day_counts)
    counts = IngestCounts(
        received=len(items),
        accepted=per_status[ingest.ACCEPTED],
        duplicate=per_status[ingest.DUPLICATE],
        rejected=per_status[ingest.REJECTED],
        held=per_status[ingest.HELD],
    )
    # The lock order of core/locks.py: control totals, then every exception case the batch will
    # touch, then (with the batch's audit entries, its last write) the audit chain head.
    if store_rejections or counts["accepted"] or counts["held"] or counts["duplicate"]:
        _tally_add(tally)
    openings = _open_unmapped_cases(held) if held else []
    conflict_groups = _conflict_groups(conflict_raws)
    openings += [_conflict_opening(source, group) for source, group in conflict_groups.items()]
    if store_rejections:
        openings += _rejected_openings(validated.rejections)
    audit: list[AuditSpec] = []
    if openings:
        cases_lock(fingerprints=[o.fingerprint for o in openings])
        cases = cases_open_or_update_many(openings=openings, actor=actor, now=now)
        audit = cases.audit
        if store_rejections and validated.rejections:
            _dead_letter(
                validated.rejections, case_ids=cases.case_ids, api_key_id=api_key_id, now=now
            )
        if conflict_raws:
            _record_conflicts(
                conflict_groups, case_ids=cases.case_ids, api_key_id=api_key_id, now=now
            )
    # Last: the batch's audit entries (its cases', then its own) in one statement, so the audit
    # chain head is held from here to the commit only (docs/decisions.md 50).
    audit.append(
        AuditSpec(
            MeteringAction.USAGE_INGEST,
            "metering.ingestbatch",
            batch_id,
            f"{channel} batch of {len(items)}",
            after={**counts, "channel": channel, "sources": sorted({s for s, _ in tally})[:20]},
        )
    )
    audit_record_many(actor=actor, entries=audit)
    return IngestResult(
        results=[r for r in results if r is not None],
        counts=counts,
        batch_id=batch_id,
        valid=cands,
        conflicting={c.index for c in conflict_raws},
        in_batch=set(validated.in_batch_duplicates),
    )


_HELD_COLUMNS = (
    "source",
    "event_id",
    "customer_ref",
    "metric_id",
    "metric_version_id",
    "timestamp",
    "value",
    "properties",
    "received_at",
    "api_key_id",
)


def _store_held(held: list[ingest.Candidate], *, now: datetime, api_key_id: int | None) -> None:
    """The held events: one COPY on PostgreSQL (bulk_create's value preparation cost seconds for
    a batch of 10,000), bulk_create elsewhere."""
    if connection.vendor == "postgresql":
        rows = [
            (
                c.source,
                c.event_id,
                c.customer_ref,
                c.version.metric_id,
                c.version.id,
                c.timestamp.isoformat(),
                c.value,
                orjson.dumps(c.properties).decode(),
                now.isoformat(),
                api_key_id,
            )
            for c in held
        ]
        with connection.cursor() as cur:
            pgcopy.copy_rows(cur, table=HeldEvent._meta.db_table, columns=_HELD_COLUMNS, rows=rows)
        return
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


def _open_unmapped_cases(held: list[ingest.Candidate]) -> list[CaseOpening]:
    """One unmapped_customer case per source and customer_ref the held events name."""
    groups: dict[tuple[str, str], int] = defaultdict(int)
    for c in held:
        groups[(c.source, c.customer_ref)] += 1
    return [
        CaseOpening(
            kind=MeteringCaseKind.UNMAPPED,
            fingerprint=unmapped_fingerprint(source, ref),
            title=f"No customer mapped for {source}:{ref}; its usage is held",
            error_code=MeteringCaseKind.UNMAPPED,
            occurrences=n,
            error_message=f"Events from source '{source}' for customer_ref '{ref}' are held until a "
            "customer mapping is added.",
            details={"source": source, "customer_ref": ref},
        )
        for (source, ref), n in sorted(groups.items())
    ]


def unmapped_fingerprint(source: str, customer_ref: str) -> str:
    return f"metering:unmapped:{source}:{customer_ref}"


def conflict_fingerprint(source: str) -> str:
    return f"metering:conflict:{source}"


def _conflict_groups(cands: list[ingest.Candidate]) -> dict[str, list[ingest.Candidate]]:
    groups: dict[str, list[ingest.Candidate]] = defaultdict(list)
    for c in cands:
        groups[c.source].append(c)
    return dict(sorted(groups.items()))


def _conflict_opening(source: str, group: list[ingest.Candidate]) -> CaseOpening:
    return CaseOpening(
        kind=MeteringCaseKind.CONFLICT,
        fingerprint=conflict_fingerprint(source),
        title=f"Events from {source} re-sent with different content",
        error_code=MeteringCaseKind.CONFLICT,
        occurrences=len(group),
        error_message="An event id already received was sent again with different content; the "
        "original stands until finance decides.",
        details={"source": source, "last_event_id": group[-1].event_id},
    )


def _record_conflicts(
    groups: dict[str, list[ingest.Candidate]],
    *,
    case_ids: dict[str, int],
    api_key_id: int | None,
    now: datetime,
) -> None:
    rows = [
        DuplicateConflict(
            source=source,
            event_id=c.event_id,
            received_at=now,
            api_key_id=api_key_id,
            raw=_conflict_raw(c.raw),
            case_id=case_ids[conflict_fingerprint(source)],
        )
        for source, group in groups.items()
        for c in group
    ]
    DuplicateConflict.objects.bulk_create(rows, batch_size=1000)


def _conflict_raw(raw: Any) -> Any:
    """The JSON a DuplicateConflict keeps: the payload, or its text when it is not storable JSON."""
    raw_json, raw_text = _raw_for_storage(raw)
    return raw_json or {"raw": raw_text}


# --- dead letter: correct and re-submit ------------------------------------------------------


def rejected_event_resubmit(
    *, rejected: RejectedEvent, corrected: dict[str, Any], actor: Actor
) -> EventOutcome:
    """Re-submit a corrected rejected event (canonical shape). Returns its outcome.

    Accepted, held or duplicate: the dead letter is marked re-submitted.
    Rejected again: nothing changes, the error comes back.
    """
    with transaction.atomic():
        locked = RejectedEvent.objects.select_for_update().get(pk=rejected.pk)
        if locked.status != RejectedStatus.OPEN:
            raise Conflict(
                "This rejected event was already re-submitted.",
                code=MeteringErrorCode.REJECTED_NOT_OPEN,
            )
        result = usage_ingest(
            items=[IngestItem(corrected, corrected)],
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
            action=MeteringAction.USAGE_RESUBMIT,
            obj=locked,
            before={"raw": locked.raw or locked.raw_text},
            after={"event": corrected, "outcome": outcome["status"]},
        )
    return outcome
