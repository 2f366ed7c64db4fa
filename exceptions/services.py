"""Writes of the exceptions core: the audit trail, opening and closing exception cases.

Every app calls these inside its own transaction, so an audit entry exists if
and only if the change it describes was committed.
"""

from __future__ import annotations

import hashlib
import json
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from collections.abc import Sequence
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Model
from django.utils import timezone

from core import locks
from core.actors import Actor
from core.pgcopy import copy_in, copy_statement, copy_text
from exceptions.policies import due_at, policies_by_kind, policy_for, severity_for
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
    try:  # orjson: ~5x faster, the same values (datetimes, dates, times go to Django's encoder)
        return orjson.loads(orjson.dumps(value, default=_DJANGO_JSON.default, option=_ORJSON_OPTS))
    except TypeError:  # what orjson does not take (an int past 64 bits): the stdlib's encoder
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


_DJANGO_JSON = DjangoJSONEncoder()
_ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


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
    last_seq, last_hash = _lock_head()
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
    _set_head(entry.seq, entry.entry_hash)
    return entry


_HEAD_TABLE = "exceptions_auditchainhead"


def _lock_head() -> tuple[int, str]:
    """Lock the chain head row (FOR UPDATE, held to the end of the transaction) and read it.
    Plain SQL: this runs once per ingest batch, and the ORM's overhead showed there."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cur:
        cur.execute(f"SELECT last_seq, last_hash FROM {_HEAD_TABLE} WHERE id = 1{lock}")
        row = cur.fetchone()
    if row is None:  # a fresh or flushed database: the chain starts at genesis
        head = AuditChainHead.objects.select_for_update().get_or_create(pk=1)[0]
        return head.last_seq, head.last_hash
    return int(row[0]), str(row[1])


def _set_head(seq: int, entry_hash: str) -> None:
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {_HEAD_TABLE} SET last_seq = %s, last_hash = %s WHERE id = 1",
            [seq, entry_hash],
        )


@dataclass(frozen=True, slots=True)
class AuditSpec:
    """One entry for audit_record_many: what changed (`object_type`/`object_id`, or `obj`'s)."""

    action: str
    object_type: str
    object_id: str
    object_repr: str = ""
    before: Any = None
    after: Any = None
    reason: str = ""

    @classmethod
    def of(cls, obj: Model, action: str, **kw: Any) -> AuditSpec:
        object_type, object_id, object_repr = object_ref(obj)
        return cls(action, object_type, object_id, object_repr, **kw)


# AuditEntry's columns as audit_record_many COPYs them: the ones known before the head is
# locked, then seq, prev_hash and entry_hash, which the chain decides.
_ENTRY_COLUMNS = (
    "at",
    "actor_kind",
    "actor_label",
    "actor_user_id",
    "actor_api_key_id",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "reason",
    "seq",
    "prev_hash",
    "entry_hash",
)


def _jsonb_text(value: Any) -> str | None:
    """A JSON column's value as COPY reads it: its JSON text (any JSON, not only objects)."""
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _fixed_values(
    at: Any, actor: Actor, spec: AuditSpec, before: Any, after: Any
) -> tuple[Any, ...]:
    """An entry's column values known before the chain head is locked (_ENTRY_COLUMNS up to
    seq), the JSON columns as their JSON text."""
    return (
        at,
        actor.kind,
        actor.label[:200],
        actor.user_id,
        actor.api_key_id,
        spec.action,
        spec.object_type,
        str(spec.object_id),
        spec.object_repr[:200],
        _jsonb_text(before),
        _jsonb_text(after),
        spec.reason,
    )


def _content_parts(
    *, at: str, actor: Actor, spec: AuditSpec, before: Any, after: Any
) -> tuple[str, str]:
    """audit_content's text around prev_hash and seq: content = head + prev_hash + mid + seq + "}".
    With sorted keys, prev_hash, reason and seq are the last three (every other key sorts
    before "prev_hash"), so everything but the chain's two values is built before the lock."""
    rest = {
        "action": spec.action,
        "actor_api_key_id": actor.api_key_id,
        "actor_kind": actor.kind,
        "actor_label": actor.label[:200],
        "actor_user_id": actor.user_id,
        "after": after,
        "at": at,
        "before": before,
        "object_id": str(spec.object_id),
        "object_repr": spec.object_repr[:200],
        "object_type": spec.object_type,
    }
    dumped = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    head = dumped[:-1] + ',"prev_hash":"'
    mid = '","reason":' + json.dumps(spec.reason, ensure_ascii=False) + ',"seq":'
    return head, mid


def audit_record_many(*, actor: Actor, entries: Sequence[AuditSpec]) -> int:
    """Append `entries` (in order) to the audit trail in one statement, in the caller's
    transaction; returns the seq of the last (0 when there is none).

    For a batch's many entries (an ingest batch's cases and its own entry): call it as the
    transaction's last write. Everything but the chain's seq and hashes is built before the
    chain head is locked, and the rows go in with one COPY, so the head, which every
    transaction that audits waits for, is held for milliseconds. All entries carry one `at`.
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction("audit_record_many must run inside transaction.atomic().")
    if not entries:
        return 0
    at = timezone.now()
    at_text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    postgres = connection.vendor == "postgresql"
    prepared: list[tuple[str, str, str, AuditSpec, Any, Any]] = []
    for spec in entries:
        if not spec.action or not spec.object_type:
            raise ValueError("audit_record_many needs an action and an object for every entry.")
        before, after = _json_safe(spec.before), _json_safe(spec.after)
        head, mid = _content_parts(at=at_text, actor=actor, spec=spec, before=before, after=after)
        fixed = ""
        if postgres:
            fixed = copy_text([_fixed_values(at.isoformat(), actor, spec, before, after)])[:-1]
        prepared.append((head, mid, fixed, spec, before, after))

    last_seq, last_hash = _lock_head()
    seq, prev = last_seq, last_hash
    if postgres:
        lines = []
        for head, mid, fixed, _, _, _ in prepared:
            seq += 1
            digest = hashlib.sha256(f"{head}{prev}{mid}{seq}}}".encode()).hexdigest()
            lines.append(f"{fixed}\t{seq}\t{prev}\t{digest}\n")
            prev = digest
        with connection.cursor() as cur:
            copy_in(cur, copy_statement(AuditEntry._meta.db_table, _ENTRY_COLUMNS), "".join(lines))
    else:
        rows = []
        for head, mid, _, spec, before, after in prepared:
            seq += 1
            digest = hashlib.sha256(f"{head}{prev}{mid}{seq}}}".encode()).hexdigest()
            rows.append(
                AuditEntry(
                    seq=seq,
                    at=at,
                    actor_kind=actor.kind,
                    actor_label=actor.label[:200],
                    actor_user_id=actor.user_id,
                    actor_api_key_id=actor.api_key_id,
                    action=spec.action,
                    object_type=spec.object_type,
                    object_id=str(spec.object_id),
                    object_repr=spec.object_repr[:200],
                    before=before,
                    after=after,
                    reason=spec.reason,
                    prev_hash=prev,
                    entry_hash=digest,
                )
            )
            prev = digest
        AuditEntry.objects.bulk_create(rows, batch_size=1000)
    _set_head(seq, prev)
    return seq


def audit_append_cte(*, actor: Actor, spec: AuditSpec, guard: str) -> tuple[str, list[Any]]:
    """WITH-list items that append one entry to the audit trail inside the caller's single
    statement (PostgreSQL only), and their parameters, for a write that is one statement
    (in autocommit that statement is its transaction: the entry commits with the change).

    The entry is appended when the caller's CTE named `guard` returns a row (its change
    happened), and not otherwise. Its content is built here, before the statement, as
    audit_record_many builds it; the database locks the chain head, computes seq and the
    SHA-256 of that content around the head's hash (the same bytes entry_hash_of checks),
    inserts the entry and moves the head, all in the statement, so the head is locked for
    the rest of that one statement only. A missing head row fails the statement (a NULL
    seq), so a change never commits without its entry."""
    if not spec.action or not spec.object_type:
        raise ValueError("audit_append_cte needs an action and an object.")
    at = timezone.now()
    at_text = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    before, after = _json_safe(spec.before), _json_safe(spec.after)
    head, mid = _content_parts(at=at_text, actor=actor, spec=spec, before=before, after=after)
    table, columns = AuditEntry._meta.db_table, ", ".join(_ENTRY_COLUMNS)
    sql = f"""
    _audit_head AS (
        SELECT last_seq, last_hash FROM {_HEAD_TABLE}
        WHERE id = 1 AND EXISTS (SELECT 1 FROM {guard}) FOR UPDATE
    ),
    _audit_new AS (
        SELECT last_seq + 1 AS seq, last_hash AS prev_hash,
               encode(sha256(convert_to(
                   %s || last_hash || %s || (last_seq + 1)::text || '}}', 'UTF8')), 'hex')
                   AS entry_hash
        FROM _audit_head
    ),
    _audit_moved AS (
        UPDATE {_HEAD_TABLE} AS h SET last_seq = n.seq, last_hash = n.entry_hash
        FROM _audit_new AS n WHERE h.id = 1 RETURNING h.id
    ),
    _audit_entry AS (
        INSERT INTO {table} ({columns})
        SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s,
               n.seq, n.prev_hash, n.entry_hash
        FROM (SELECT 1 FROM {guard} LIMIT 1) AS changed LEFT JOIN _audit_new AS n ON true
        RETURNING seq
    )"""
    return sql, [head, mid, *_fixed_values(at, actor, spec, before, after)]


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


@dataclass(frozen=True, slots=True)
class CaseOpening:
    """One failure for cases_open_or_update_many (case_open_or_update's arguments)."""

    kind: str
    fingerprint: str
    title: str
    error_code: str = ""
    error_message: str = ""
    details: dict[str, Any] | None = None
    occurrences: int = 1
    severity: str = Severity.MEDIUM


@dataclass
class CasesOpened:
    """What cases_open_or_update_many did: the case id per fingerprint, and the audit entries
    (one case.open or case.recur per case) the caller appends with audit_record_many."""

    case_ids: dict[str, int]
    audit: list[AuditSpec]
    created: int = 0


_CASE_TABLE = "exceptions_exceptioncase"
_NewCase = namedtuple(
    "_NewCase",
    "kind fingerprint title severity error_code error_message details occurrences due_at",
)
# The columns cases_open_or_update_many reads of an open case (tuples: model instances cost
# ~0.1 ms each, a second for a batch of 10,000).
_OpenCase = namedtuple(
    "_OpenCase",
    "id fingerprint kind title severity first_seen_at amount_at_stake occurrence_count details",
)
_CASE_RECUR_SQL = f"""
UPDATE {_CASE_TABLE} AS c
SET occurrence_count = c.occurrence_count + v.n, last_seen_at = %s, severity = v.severity,
    error_message = COALESCE(NULLIF(v.message, ''), c.error_message), details = v.details::jsonb
FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[])
    AS v(id, n, severity, message, details)
WHERE c.id = v.id
"""


def cases_open_or_update_many(
    *, openings: Sequence[CaseOpening], actor: Actor, now: datetime | None = None
) -> CasesOpened:
    """case_open_or_update for many failures at once, in a few set-based statements: one
    read of the open cases, one multi-row insert of the new ones, one update of the others.

    The caller holds the cases' locks (cases_lock: fingerprint
    advisory locks, then the open rows) and appends the returned audit entries with
    audit_record_many before its transaction ends (the batch's own entry with them), so the
    audit chain head is locked only for that last statement. Openings with one fingerprint
    are merged (occurrences summed, the last one's message and details kept).
    """
    if not connection.in_atomic_block:
        raise AuditOutsideTransaction("cases_open_or_update_many must run in transaction.atomic().")
    merged: dict[str, CaseOpening] = {}
    for o in openings:
        seen = merged.get(o.fingerprint)
        merged[o.fingerprint] = (
            o if seen is None else replace(o, occurrences=seen.occurrences + o.occurrences)
        )
    if not merged:
        return CasesOpened({}, [])
    now = now or timezone.now()
    policies = policies_by_kind(sorted({o.kind for o in merged.values()}))
    open_cases = {
        row[1]: _OpenCase(*row)
        for row in ExceptionCase.objects.filter(
            fingerprint__in=list(merged), status__in=OPEN_STATUSES
        ).values_list(*_OpenCase._fields)
    }
    fresh = [o for fp, o in merged.items() if fp not in open_cases]
    severities = {
        kind: severity_for(policy=policy, base=Severity.MEDIUM, amount=None, opened_at=now, now=now)
        for kind, policy in policies.items()
    }
    new_rows = [
        _NewCase(
            o.kind,
            o.fingerprint,
            o.title[:255],
            severities[o.kind]
            if o.severity == Severity.MEDIUM
            else severity_for(
                policy=policies[o.kind], base=o.severity, amount=None, opened_at=now, now=now
            ),
            o.error_code,
            o.error_message,
            _json_safe(o.details or {}),
            o.occurrences,
            due_at(policy=policies[o.kind], opened_at=now),
        )
        for o in fresh
    ]
    try:
        with transaction.atomic():
            pks = _insert_cases(new_rows, now=now)
    except IntegrityError:
        # A caller that does not take the fingerprint locks (case_open_or_update alone) opened
        # one of them meanwhile: the cases one by one, the way that takes its row locks.
        return _cases_one_by_one(list(merged.values()), actor=actor, now=now)
    audit = [
        AuditSpec(
            CaseAction.OPEN,
            ExceptionCase._meta.label_lower,
            str(pk),
            f"[{case.kind}] {case.title}"[:200],
            after={
                "kind": case.kind,
                "severity": case.severity,
                "error_code": case.error_code,
                "occurrences": case.occurrences,
            },
            reason=case.error_message[:500],
        )
        for case, pk in zip(new_rows, pks, strict=True)
    ]
    ids = {case.fingerprint: pk for case, pk in zip(new_rows, pks, strict=True)}
    recurring = [(open_cases[fp], o) for fp, o in merged.items() if fp in open_cases]
    if recurring:
        updates = []
        for case, o in recurring:
            severity = severity_for(
                policy=policies[o.kind],
                base=case.severity,
                amount=case.amount_at_stake,
                opened_at=case.first_seen_at,
                now=now,
            )
            details = _json_safe(o.details) if o.details is not None else case.details
            updates.append((case.id, o.occurrences, severity, o.error_message, details))
            ids[case.fingerprint] = case.id
            audit.append(
                AuditSpec(
                    CaseAction.RECUR,
                    ExceptionCase._meta.label_lower,
                    str(case.id),
                    f"[{case.kind}] {case.title}"[:200],
                    before={"occurrences": case.occurrence_count},
                    after={"occurrences": case.occurrence_count + o.occurrences},
                )
            )
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute(
                    _CASE_RECUR_SQL,
                    [
                        now,
                        [u[0] for u in updates],
                        [u[1] for u in updates],
                        [u[2] for u in updates],
                        [u[3] for u in updates],
                        [orjson.dumps(u[4]).decode() for u in updates],
                    ],
                )
        else:
            for pk, n, severity, message, details in updates:
                ExceptionCase.objects.filter(pk=pk).update(
                    occurrence_count=F("occurrence_count") + n,
                    last_seen_at=now,
                    severity=severity,
                    details=details,
                    **({"error_message": message} if message else {}),
                )
    return CasesOpened(ids, audit, created=len(new_rows))


_CASE_INSERT_SQL = f"""
INSERT INTO {_CASE_TABLE} (kind, fingerprint, title, severity, status, source_type, source_id,
    error_code, error_message, details, occurrence_count, connection_ref, due_at, version,
    retry_count, first_seen_at, last_seen_at, resolution, resolution_code)
SELECT v.kind, v.fingerprint, v.title, v.severity, 'open', '', '', v.code, v.message,
    v.details::jsonb, v.n, '', v.due, 1, 0, %s, %s, '', ''
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::int[], %s::timestamptz[]) WITH ORDINALITY
    AS v(kind, fingerprint, title, severity, code, message, details, n, due, ord)
ORDER BY v.ord
RETURNING id, fingerprint
"""


def _insert_cases(rows: list[_NewCase], *, now: datetime) -> list[int]:
    """Insert new cases, return their pks in order: one INSERT ... SELECT FROM unnest on
    PostgreSQL (the ORM's bulk_create spent seconds on 10,000 rows), bulk_create elsewhere."""
    if not rows:
        return []
    if connection.vendor != "postgresql":
        made = ExceptionCase.objects.bulk_create(
            [
                ExceptionCase(
                    kind=r.kind,
                    fingerprint=r.fingerprint,
                    title=r.title,
                    severity=r.severity,
                    error_code=r.error_code,
                    error_message=r.error_message,
                    details=r.details,
                    occurrence_count=r.occurrences,
                    due_at=r.due_at,
                    first_seen_at=now,
                    last_seen_at=now,
                )
                for r in rows
            ],
            batch_size=1000,
        )
        return [c.pk for c in made]
    with connection.cursor() as cur:
        cur.execute(
            _CASE_INSERT_SQL,
            [
                now,
                now,
                [r.kind for r in rows],
                [r.fingerprint for r in rows],
                [r.title for r in rows],
                [r.severity for r in rows],
                [r.error_code for r in rows],
                [r.error_message for r in rows],
                [orjson.dumps(r.details).decode() for r in rows],
                [r.occurrences for r in rows],
                [r.due_at for r in rows],
            ],
        )
        by_fingerprint = {fp: pk for pk, fp in cur.fetchall()}
    return [by_fingerprint[r.fingerprint] for r in rows]


def _cases_one_by_one(openings: list[CaseOpening], *, actor: Actor, now: datetime) -> CasesOpened:
    """The slow path of cases_open_or_update_many after a race: case_open_or_update per case
    (each writes its own audit entry, so nothing is left for the caller to append)."""
    ids: dict[str, int] = {}
    created = 0
    for o in openings:
        case, new = case_open_or_update(
            kind=o.kind,
            fingerprint=o.fingerprint,
            title=o.title,
            actor=actor,
            severity=o.severity,
            error_code=o.error_code,
            error_message=o.error_message,
            details=o.details,
            occurrences=o.occurrences,
        )
        ids[o.fingerprint] = case.pk
        created += new
    return CasesOpened(ids, [], created=created)


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
    cases' rows by id. Two batches touching the same cases then queue instead of deadlocking.
    The advisory locks are per bucket of fingerprints (locks.CASE_FINGERPRINT_BUCKETS): a batch
    of 10,000 new cases took 10,000 locks, past PostgreSQL's shared lock table."""
    fps = sorted(set(fingerprints))
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(%s, h) FROM (SELECT DISTINCT hashtext(f) & %s AS h "
                "FROM unnest(%s::text[]) AS f ORDER BY 1) AS t",
                [locks.CASE_FINGERPRINT, locks.CASE_FINGERPRINT_BUCKETS - 1, fps],
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
