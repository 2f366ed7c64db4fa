"""Writes of the exceptions core: the audit trail, opening and closing exception cases.

Every app calls these inside its own transaction, so an audit entry exists if
and only if the change it describes was committed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Model
from django.utils import timezone

from core import locks
from core.actors import Actor
from exceptions.policies import due_at, policy_for, severity_for
from exceptions.models import (
    OPEN_STATUSES,
    AuditChainHead,
    AuditEntry,
    CaseStatus,
    ExceptionCase,
    Severity,
)
from exceptions.audit_actions import CLOSE_ACTIONS, CaseAction

GENESIS_HASH = "0" * 64


class AuditOutsideTransaction(RuntimeError):
    """audit_record was called outside a transaction: the entry could outlive a rolled-back change."""


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so the hashed value equals what the database returns."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_content(
    *,
    seq: int,
    at: datetime,
    actor_kind: str,
    actor_label: str,
    actor_user_id: int | None,
    actor_api_key_id: int | None,
    action: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    before: Any,
    after: Any,
    reason: str,
    prev_hash: str,
) -> bytes:
    """The canonical bytes an entry's hash covers (sorted keys, UTC microseconds)."""
    payload = {
        "seq": seq,
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor_kind": actor_kind,
        "actor_label": actor_label,
        "actor_user_id": actor_user_id,
        "actor_api_key_id": actor_api_key_id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "object_repr": object_repr,
        "before": before,
        "after": after,
        "reason": reason,
        "prev_hash": prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash_of(entry: AuditEntry) -> str:
    content = audit_content(
        seq=entry.seq,
        at=entry.at,
        actor_kind=entry.actor_kind,
        actor_label=entry.actor_label,
        actor_user_id=entry.actor_user_id,
        actor_api_key_id=entry.actor_api_key_id,
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        object_repr=entry.object_repr,
        before=entry.before,
        after=entry.after,
        reason=entry.reason,
        prev_hash=entry.prev_hash,
    )
    return hashlib.sha256(content).hexdigest()


def object_ref(obj: Model) -> tuple[str, str, str]:
    """(object_type, object_id, object_repr) of a model instance."""
    return obj._meta.label_lower, str(obj.pk), str(obj)[:200]


def audit_record(
    *,
    actor: Actor,
    action: str,
    obj: Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    before: Any = None,
    after: Any = None,
    reason: str = "",
) -> AuditEntry:
    """Append one entry to the audit trail, in the caller's transaction.

    Pass the changed model instance as `obj`, or `object_type`/`object_id` for
    something that is not one row. Raises AuditOutsideTransaction when there is
    no transaction: an entry must never outlive a change that rolled back.
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction(
            f"audit_record({action!r}) must run inside transaction.atomic()."
        )
    if obj is not None:
        object_type, object_id, object_repr = object_ref(obj)
    if not action or not object_type:
        raise ValueError("audit_record needs an action and an object.")
    before, after = _json_safe(before), _json_safe(after)

    # The head row serialises appends: each entry links to the one committed before it.
    # Plain SQL: this runs once per ingest batch, and the ORM's overhead showed there.
    head_table = AuditChainHead._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cur:
        cur.execute(f"SELECT last_seq, last_hash FROM {head_table} WHERE id = 1{lock}")
        row = cur.fetchone()
    if row is None:  # a fresh or flushed database: the chain starts at genesis
        head = AuditChainHead.objects.select_for_update().get_or_create(pk=1)[0]
        row = (head.last_seq, head.last_hash)
    last_seq, last_hash = row
    entry = AuditEntry(
        seq=last_seq + 1,
        at=timezone.now(),
        actor_kind=actor.kind,
        actor_label=actor.label[:200],
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        object_repr=object_repr[:200],
        before=before,
        after=after,
        reason=reason,
        prev_hash=last_hash,
    )
    entry.entry_hash = entry_hash_of(entry)
    entry.save(force_insert=True)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {head_table} SET last_seq = %s, last_hash = %s WHERE id = 1",
            [entry.seq, entry.entry_hash],
        )
    return entry


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    entry_id: int | None
    problem: str


def audit_verify_chain(*, batch_size: int = 2000) -> tuple[int, ChainBreak | None]:
    """Walk the chain in order; return (entries checked, first break or None)."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    entries = AuditEntry.objects.order_by("seq").iterator(chunk_size=batch_size)
    for entry in entries:
        if entry.seq != expected_seq:
            return checked, ChainBreak(
                expected_seq,
                None,
                f"entry #{expected_seq} is missing (next present is #{entry.seq})",
            )
        if entry.prev_hash != expected_prev:
            return checked, ChainBreak(
                entry.seq, entry.pk, "its prev_hash does not match the hash of the entry before it"
            )
        if entry_hash_of(entry) != entry.entry_hash:
            return checked, ChainBreak(
                entry.seq, entry.pk, "its content does not match its hash (the entry was altered)"
            )
        checked += 1
        expected_prev = entry.entry_hash
        expected_seq += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and head.last_seq != expected_seq - 1:
        return checked, ChainBreak(
            expected_seq,
            None,
            f"the chain ends at #{expected_seq - 1} but the head says #{head.last_seq}",
        )
    return checked, None


def case_open_or_update(
    *,
    kind: str,
    fingerprint: str,
    title: str,
    actor: Actor,
    severity: str = Severity.MEDIUM,
    error_code: str = "",
    error_message: str = "",
    source: Model | None = None,
    source_type: str = "",
    source_id: str = "",
    details: dict[str, Any] | None = None,
    occurrences: int = 1,
    amount_at_stake: Decimal | None = None,
    currency_id: str | None = None,
    legal_entity_id: int | None = None,
    customer_id: int | None = None,
    connection_ref: str = "",
) -> tuple[ExceptionCase, bool]:
    """Open a case for a failure, or count another occurrence on the open one.

    One open case per `fingerprint` (a partial unique constraint holds it under
    concurrency). The kind's policy sets the due date and may raise the
    severity (amount, age). Returns (case, created).
    """
    if source is not None:
        source_type, source_id, _ = object_ref(source)
    now = timezone.now()
    policy = policy_for(kind)
    with transaction.atomic():
        case = (
            ExceptionCase.objects.select_for_update()
            .filter(fingerprint=fingerprint, status__in=OPEN_STATUSES)
            .first()
        )
        created = False
        if case is None:
            try:
                with transaction.atomic():
                    severity = severity_for(
                        policy=policy, base=severity, amount=amount_at_stake, opened_at=now, now=now
                    )
                    case = ExceptionCase.objects.create(
                        kind=kind,
                        fingerprint=fingerprint,
                        title=title[:255],
                        severity=severity,
                        due_at=due_at(policy=policy, opened_at=now),
                        connection_ref=connection_ref,
                        source_type=source_type,
                        source_id=str(source_id),
                        error_code=error_code,
                        error_message=error_message,
                        details=_json_safe(details or {}),
                        occurrence_count=occurrences,
                        amount_at_stake=amount_at_stake,
                        currency_id=currency_id,
                        legal_entity_id=legal_entity_id,
                        customer_id=customer_id,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                    created = True
            except IntegrityError:
                # Another transaction opened it between our read and our insert.
                case = ExceptionCase.objects.select_for_update().get(
                    fingerprint=fingerprint, status__in=OPEN_STATUSES
                )
        if created:
            audit_record(
                actor=actor,
                action=CaseAction.OPEN,
                obj=case,
                after={
                    "kind": kind,
                    "severity": severity,
                    "error_code": error_code,
                    "occurrences": occurrences,
                },
                reason=error_message[:500],
            )
            return case, True

        amount = amount_at_stake if amount_at_stake is not None else case.amount_at_stake
        ExceptionCase.objects.filter(pk=case.pk).update(
            occurrence_count=F("occurrence_count") + occurrences,
            last_seen_at=now,
            severity=severity_for(
                policy=policy,
                base=case.severity,
                amount=amount,
                opened_at=case.first_seen_at,
                now=now,
            ),
            error_message=error_message or case.error_message,
            details=_json_safe(details) if details is not None else case.details,
            amount_at_stake=amount_at_stake
            if amount_at_stake is not None
            else case.amount_at_stake,
        )
        before_count = case.occurrence_count
        case.refresh_from_db()
        audit_record(
            actor=actor,
            action=CaseAction.RECUR,
            obj=case,
            before={"occurrences": before_count},
            after={"occurrences": case.occurrence_count},
        )
        return case, False


def case_close(
    *, case: ExceptionCase, actor: Actor, status: str, resolution: str, resolution_code: str = ""
) -> ExceptionCase:
    """Resolve or dismiss an open case, with the reason."""
    if status not in (CaseStatus.RESOLVED, CaseStatus.DISMISSED):
        raise ValueError(f"A case is closed as resolved or dismissed, not {status!r}.")
    if not resolution.strip():
        raise ValueError("Say why the case is closed.")
    with transaction.atomic():
        locked = ExceptionCase.objects.select_for_update().get(pk=case.pk)
        before = {"status": locked.status}
        locked.status = status
        locked.resolution = resolution
        locked.resolution_code = resolution_code
        locked.resolved_at = timezone.now()
        locked.next_retry_at = None
        locked.version += 1
        locked.full_clean()
        locked.save()
        audit_record(
            actor=actor,
            action=CLOSE_ACTIONS[status],
            obj=locked,
            before=before,
            after={"status": status, "resolution_code": resolution_code},
            reason=resolution,
        )
    return locked


def cases_lock(*, fingerprints: Iterable[str]) -> None:
    """Lock the exception cases a transaction is about to open or count on, before the first is
    opened (opening one appends an audit entry, which takes the audit chain head): the
    fingerprints' advisory locks in hash order (a case not opened yet has no row), then the open
    cases' rows by id. Two batches touching the same cases then queue instead of deadlocking."""
    fps = sorted(set(fingerprints))
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, h) FROM (SELECT DISTINCT hashtext(f) AS h "
                "FROM unnest(%s::text[]) AS f ORDER BY 1) AS t",
                [locks.CASE_FINGERPRINT, fps],
            )
    list(
        ExceptionCase.objects.select_for_update()
        .filter(fingerprint__in=fps, status__in=OPEN_STATUSES)
        .order_by("id")
        .values_list("id", flat=True)
    )


def case_resolve_open(*, fingerprint: str, actor: Actor, resolution: str) -> ExceptionCase | None:
    """Resolve the open case of `fingerprint`, if there is one (the failure that opened it is
    gone: an app closes its own cases this way, without reading the cases' table)."""
    case = ExceptionCase.objects.filter(fingerprint=fingerprint, status__in=OPEN_STATUSES).first()
    if case is None:
        return None
    return case_close(case=case, actor=actor, status=CaseStatus.RESOLVED, resolution=resolution)
