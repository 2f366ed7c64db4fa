"""The outbox drain: postings -> the ERP, exactly once, through crashes and faults.

`outbox_drain(worker=..., connection_id=..., max_postings=...)` is the one entry point every
worker, task, test and benchmark uses. It loops over three short steps per posting:

1. **claim** (one transaction for up to CLAIM_BATCH postings, decision 54): the oldest
   postings that are `pending`, `retry_wait` and due, or
   `in_flight` with an expired lease, whose connection is enabled and whose dependency (the
   invoice a credit memo or a cancellation refers to) is posted; locked with
   ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (a compare-and-set UPDATE on SQLite).
   Its accounts and party are mapped first: a missing mapping moves it to `held` and opens a
   `missing_gl_mapping` case (nothing is sent, nothing is counted). Otherwise our attempt
   counter goes up, a `PostingAttempt` row (running) is written and a lease taken, all
   committed BEFORE the ERP is called. A posting taken over from an expired lease has its
   running attempt recorded as of unknown outcome and is looked up in the ERP first. A
   posting of a batch whose lease ran short before its turn is given back unsent.
2. **send** (no transaction open): the connector call; every request it makes is recorded.
3. **finish** (one transaction; one statement for a first attempt that posted): the outcome
   moves the posting to `posted`, `retry_wait` (exponential backoff with jitter,
   per-connection limits), `dead` (attempts exhausted) or
   `failed` (permanent error at once); `failed`/`dead` open a case with the ERP's own message.
   A worker whose lease was taken over meanwhile records its attempt but leaves the posting
   to the new holder.

django-q2 only triggers it (erp_sync.tasks); the rows are the truth, so running it twice, or
in several workers at once, sends no posting twice at the same time.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from core.actors import Actor
from core.errors import AppError
from core.models import Customer
from erp_sync import error_codes
from erp_sync.connectors import base
from erp_sync.connectors.registry import UnknownConnector, connector_for
from erp_sync.models import (
    AccountMapping,
    AccountRole,
    AttemptOutcome,
    CreditMemoMode,
    DocumentType,
    ErpConnection,
    PartyMapping,
    Posting,
    PostingAttempt,
    PostingStatus,
)
from exceptions.models import OPEN_STATUSES, ExceptionCase
from exceptions.services import (
    AuditSpec,
    audit_append_cte,
    audit_record,
    case_close,
    case_open_or_update,
)

log = logging.getLogger(__name__)

DRAIN_ACTOR = Actor.for_task("erp_sync.drain")
#: Longest text of an ERP message or exchange body kept on an attempt.
MAX_TEXT = 4000
#: How many exchanges one attempt keeps (a connector retrying a warning makes a few).
MAX_EXCHANGES = 50


class MissingMappings(Exception):
    def __init__(self, missing: list[tuple[str, str]]) -> None:
        super().__init__(", ".join(f"{role}:{key}" if key else role for role, key in missing))
        self.missing = missing


# --------------------------------------------------------------------------- mapping


class Resolver:
    """Our ledger's accounts and customers -> the connection's ERP accounts and parties."""

    def __init__(self, conn: ErpConnection) -> None:
        self.conn = conn
        self.accounts = {
            (m.role, m.key): m.account for m in AccountMapping.objects.filter(connection=conn)
        }
        self.missing: list[tuple[str, str]] = []
        self.parties: dict[int, base.Party] = {}

    def role_account(self, role: str, keys: list[str]) -> str:
        for key in [*keys, ""]:
            found = self.accounts.get((role, key))
            if found:
                return found
        want = (role, next((k for k in keys if k), ""))
        if want not in self.missing:
            self.missing.append(want)
        return ""

    def ledger_account(self, account: str, *, metric: str = "", component: str = "") -> str:
        """'revenue:api_calls', 'tax_payable:0.19', 'receivable', ... -> the ERP account."""
        role, _, key = account.partition(":")
        keys = [k for k in (metric, component) if k] if role == "revenue" else []
        if key and key not in keys:
            keys.insert(0, key)
        return self.role_account(role, keys)

    def party(self, customer_id: int) -> base.Party:
        """The customer with its party mapping on this connection (one query, unless
        `prefetch_parties` read it already)."""
        if customer_id not in self.parties:
            self.prefetch_parties([customer_id])
        return self.parties[customer_id]

    def prefetch_parties(self, customer_ids: Iterable[int]) -> None:
        """The customers (and their party mappings on this connection) of several postings, in
        one query: the drain's batch claim reads every party of its batch at once."""
        wanted = set(customer_ids) - set(self.parties)
        if not wanted:
            return
        mapped = PartyMapping.objects.filter(
            connection=self.conn, customer_id=OuterRef("pk")
        ).values("erp_party_id")[:1]
        rows = (
            Customer.objects.filter(pk__in=wanted)
            .annotate(erp_party_id=Subquery(mapped))
            .values_list("pk", "code", "name", "erp_party_id")
        )
        for pk, code, name, erp_party_id in rows:
            self.parties[pk] = base.Party(code=code, name=name, erp_party_id=erp_party_id)
        if wanted - set(self.parties):
            raise Customer.DoesNotExist(f"no customer {sorted(wanted - set(self.parties))}")

    def check(self) -> None:
        if self.missing:
            raise MissingMappings(self.missing)


def _dec(value: Any) -> Decimal:
    """A quantity or price with no trailing zeros ('0.100000' -> 0.1; '100.000000' -> 100):
    ERPs check the digits of what they are sent, not its value."""
    d = Decimal(str(value)) if value is not None else Decimal(0)
    n = d.normalize()
    # exponent is a str only for NaN/Infinity, which no amount column can hold
    return n if n.as_tuple().exponent <= 0 else n.quantize(Decimal(1))  # type: ignore[operator]


def _money(value: Any, places: int) -> Decimal:
    """An amount at the currency's minor unit (our columns keep 4 places)."""
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places))


_MINOR_UNITS: dict[str, int] = {}  # a currency's minor unit never changes (ISO 4217)


def _places(currency: str) -> int:
    from core.models import Currency

    if currency not in _MINOR_UNITS:
        _MINOR_UNITS[currency] = int(Currency.objects.get(pk=currency).minor_units)
    return _MINOR_UNITS[currency]


def build_document(posting: Posting, resolver: Resolver) -> base.Document:
    p = posting.payload
    places = _places(p["currency"])
    credit_memo = p["kind"] == "credit_memo"
    contra = credit_memo and resolver.conn.credit_memo_mode == CreditMemoMode.CONTRA_REVENUE
    by_journal = bool((resolver.conn.options or {}).get("defer_by_journal"))
    lines = []
    for ln in p["lines"]:
        if by_journal and (ln.get("prepaid") or ln.get("deferred")):
            # the ERP takes revenue accounts on invoice lines; a deferral journal moves them
            account = resolver.ledger_account(
                "revenue", metric=ln["metric"], component=ln["component"]
            )
        elif ln.get("prepaid"):
            account = resolver.role_account(AccountRole.DEFERRED_REVENUE, ["prepaid"])
        elif ln.get("deferred"):
            account = resolver.role_account(AccountRole.DEFERRED_REVENUE, [])
        elif contra:
            account = resolver.role_account(
                AccountRole.CREDIT_MEMO, [k for k in (ln["metric"], ln["component"]) if k]
            )
        else:
            account = resolver.ledger_account(
                "revenue", metric=ln["metric"], component=ln["component"]
            )
        amount = _money(ln["amount"], places)
        quantity = _dec(ln["quantity"])
        unit_price = _dec(ln["unit_price"]) if ln["unit_price"] is not None else None
        if unit_price is None:
            quantity, unit_price = Decimal(1), amount
        lines.append(
            base.DocumentLine(
                source_line_id=ln["source_line_id"],
                description=ln["description"],
                quantity=quantity,
                unit_price=unit_price,
                amount=amount,
                account=account,
            )
        )
    taxes = tuple(
        base.DocumentTax(
            rate=_dec(t["rate"]),
            base=_money(t["base"], places),
            amount=_money(t["amount"], places),
            account=resolver.role_account(AccountRole.TAX_PAYABLE, [t["rate"]]),
            name=t["name"],
        )
        for t in p["taxes"]
    )
    receivable = resolver.role_account(AccountRole.RECEIVABLE, [])
    party = resolver.party(p["customer_id"])
    resolver.check()
    return base.Document(
        external_id=posting.external_id,
        kind="credit_memo" if credit_memo else "invoice",
        number=p["number"],
        issue_date=datetime.date.fromisoformat(p["issue_date"]),
        due_date=datetime.date.fromisoformat(p["due_date"]) if p.get("due_date") else None,
        currency=p["currency"],
        party=party,
        receivable_account=receivable,
        lines=tuple(lines),
        taxes=taxes,
        subtotal=_money(p["subtotal"], places),
        tax_total=_money(p["tax_total"], places),
        total=_money(p["total"], places),
        credits_external_id=p.get("credits_external_id"),
        description=p.get("description", ""),
    )


def build_journal(posting: Posting, resolver: Resolver) -> base.Journal:
    p = posting.payload
    places = _places(p["currency"])
    lines = tuple(
        base.JournalLine(
            account=resolver.ledger_account(ln["account"]),
            debit=_money(ln["debit"], places),
            credit=_money(ln["credit"], places),
            party=resolver.party(ln["customer_id"]) if ln.get("customer_id") else None,
            description=ln.get("description", ""),
        )
        for ln in p["lines"]
    )
    resolver.check()
    return base.Journal(
        external_id=posting.external_id,
        date=datetime.date.fromisoformat(p["date"]),
        currency=p["currency"],
        description=p.get("description", ""),
        lines=lines,
    )


#: The connector call of a claimed posting: ``send(connector, fresh)``; ``fresh`` says no earlier
#: attempt can have reached the ERP (see base.Connector: the connector may skip its lookup).
Send = Callable[[base.Connector, bool], base.ErpRecord]


def _with_party_ids(party: base.Party, learned: dict[str, str]) -> base.Party:
    if party.erp_party_id or party.code not in learned:
        return party
    return dataclasses.replace(party, erp_party_id=learned[party.code])


def build_send(
    posting: Posting, resolver: Resolver, learned: dict[str, str] | None = None
) -> tuple[Send, list[base.Party]]:
    """What to call on the connector for this posting, with every mapping resolved first
    (MissingMappings if any is missing: nothing is sent, never half a document).

    Parties without a mapping are ensured in the ERP first, inside the send, and their ids
    written into ``learned`` (code -> ERP id; the drain stores them as party mappings)."""
    kind = posting.document_type
    learned = {} if learned is None else learned

    def ensure(connector: base.Connector, parties: list[base.Party]) -> None:
        for party in parties:
            if not party.erp_party_id and party.code not in learned:
                learned[party.code] = connector.ensure_party(party)

    if kind in (DocumentType.INVOICE, DocumentType.CREDIT_MEMO):
        doc = build_document(posting, resolver)

        def post(connector: base.Connector, fresh: bool) -> base.ErpRecord:
            ensure(connector, [doc.party])
            ready = dataclasses.replace(doc, party=_with_party_ids(doc.party, learned))
            if kind == DocumentType.INVOICE:
                return connector.post_invoice(ready, fresh=fresh)
            return connector.post_credit_memo(ready, fresh=fresh)

        return post, [doc.party]
    if kind == DocumentType.JOURNAL:
        journal = build_journal(posting, resolver)
        parties = [ln.party for ln in journal.lines if ln.party is not None]

        def post_journal(connector: base.Connector, fresh: bool) -> base.ErpRecord:
            ensure(connector, parties)
            ready = dataclasses.replace(
                journal,
                lines=tuple(
                    dataclasses.replace(ln, party=_with_party_ids(ln.party, learned))
                    if ln.party is not None
                    else ln
                    for ln in journal.lines
                ),
            )
            return connector.post_journal(ready, fresh=fresh)

        return post_journal, parties
    if kind == DocumentType.INVOICE_CANCEL:
        target, reason = posting.payload["target_external_id"], posting.payload.get("reason", "")
        return (
            lambda c, fresh: c.cancel_invoice(
                external_id=target, reason=reason, credit_external_id=posting.external_id
            )
        ), []
    raise AppError(f"unknown document type {kind!r}", code=error_codes.INVALID_MAPPING)


# --------------------------------------------------------------------------- connectors


class _ConnectorCache(threading.local):
    """Connectors are not shared between threads (a drain per thread keeps its own sessions)."""

    def __init__(self) -> None:
        self.by_connection: dict[tuple[int, datetime.datetime], base.Connector] = {}


_CONNECTORS = _ConnectorCache()


def connection_config(conn: ErpConnection) -> base.ConnectionConfig:
    password = ""
    if conn.password_env:
        if conn.password_env not in os.environ:
            raise base.PermanentError(
                f"The environment variable {conn.password_env} (the password of ERP connection "
                f"{conn.name!r}) is not set in this process."
            )
        password = os.environ[conn.password_env]
    return base.ConnectionConfig(
        kind=conn.kind,
        base_url=conn.base_url,
        database=conn.database,
        login=conn.login,
        password=password,
        company=conn.company,
        timeout_seconds=float(conn.timeout_seconds),
        options=dict(conn.options or {}),
    )


def connector_of(conn: ErpConnection) -> base.Connector:
    """One connector per connection (and version of its row) per process: sessions are reused."""
    cache = _CONNECTORS.by_connection
    key = (conn.pk, conn.updated_at)
    found = cache.get(key)
    if found is None:
        for stale in [k for k in cache if k[0] == conn.pk]:
            del cache[stale]
        try:
            found = connector_for(connection_config(conn))
        except UnknownConnector as exc:
            raise base.PermanentError(str(exc)) from None
        cache[key] = found
    return found


# --------------------------------------------------------------------------- the drain


@dataclass
class DrainResult:
    claimed: int = 0
    posted: int = 0
    retry: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0  # postings of the connection(s) waiting for a mapping after this drain
    lost_lease: int = 0
    posting_ids: list[int] = field(default_factory=list)
    erp_seconds: float = 0.0  # time spent inside connector calls (the benchmark's overhead split)
    erp_seconds_each: list[float] = field(default_factory=list)
    total_seconds_each: list[float] = field(default_factory=list)


@dataclass
class Claim:
    posting: Posting
    attempt: PostingAttempt
    token: str
    send: Send
    learned: dict[str, str]  # code -> ERP party id, shared by a batch's claims of a connection
    was: str = PostingStatus.PENDING  # the status it was claimed from
    saved: set[str] = field(default_factory=set)  # learned codes stored as party mappings


def _claimable(now: datetime.datetime, connection_id: int | None) -> Any:
    qs = Posting.objects.filter(connection__enabled=True).filter(
        Q(status=PostingStatus.PENDING)
        | Q(status=PostingStatus.RETRY_WAIT, next_attempt_at__lte=now)
        | Q(status=PostingStatus.IN_FLIGHT, lease_expires_at__lte=now)
    )
    qs = qs.filter(Q(depends_on__isnull=True) | Q(depends_on__status=PostingStatus.POSTED))
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    return qs.order_by("id")


def backoff_seconds(conn: ErpConnection, attempts_in_budget: int) -> float:
    """Exponential backoff with 'equal jitter': half the capped delay fixed, half random."""
    delay = min(
        float(conn.backoff_cap_seconds),
        float(conn.backoff_base_seconds) * (2 ** max(attempts_in_budget - 1, 0)),
    )
    return delay / 2 + random.uniform(0, delay / 2)


def _hold(posting: Posting, conn: ErpConnection, missing: list[tuple[str, str]]) -> None:
    """Missing mappings: the posting waits (held), one case per missing account says what to map
    and which documents wait for it."""
    posting.status = PostingStatus.HELD
    posting.last_error = "missing mapping: " + ", ".join(
        f"{role} {key!r}" if key else role for role, key in missing
    )
    posting.last_error_class = "missing_mapping"
    posting.lease_expires_at = None
    posting.save(
        update_fields=["status", "last_error", "last_error_class", "lease_expires_at", "updated_at"]
    )
    for role, key in missing:
        waiting = list(
            Posting.objects.filter(connection=conn, status=PostingStatus.HELD)
            .order_by("id")
            .values_list("external_id", flat=True)[:200]
        )
        what = f"{role} account for {key!r}" if key else f"{role} account (default)"
        case_open_or_update(
            kind="missing_gl_mapping",
            fingerprint=f"missing_gl_mapping:{conn.pk}:{role}:{key}",
            title=f"Map the {what} of ERP connection {conn.name}",
            actor=DRAIN_ACTOR,
            severity="high",
            error_code=error_codes.MISSING_MAPPING,
            error_message=(
                f"No {role} account is mapped for {key!r} (nor a default) on connection "
                f"{conn.name}; {len(waiting)} document(s) wait for it."
                if key
                else f"No {role} account is mapped on connection {conn.name}; "
                f"{len(waiting)} document(s) wait for it."
            ),
            source=conn,
            legal_entity_id=conn.legal_entity_id,
            details={
                "connection_id": conn.pk,
                "role": role,
                "key": key,
                "waiting_external_ids": waiting,
            },
        )
    audit_record(
        actor=DRAIN_ACTOR,
        action="posting.held",
        obj=posting,
        after={"status": PostingStatus.HELD, "missing": [list(m) for m in missing]},
    )


#: Postings claimed in one transaction (one lock, one counter update, one insert of attempts).
CLAIM_BATCH = 10


def _customers_of(posting: Posting) -> list[int]:
    p = posting.payload
    if posting.document_type == DocumentType.JOURNAL:
        return [ln["customer_id"] for ln in p.get("lines", []) if ln.get("customer_id")]
    return [p["customer_id"]] if p.get("customer_id") else []


def _claim_batch(
    *,
    connection_id: int | None,
    worker: str,
    now: datetime.datetime,
    exclude: set[int],
    limit: int,
) -> list[Claim] | None:
    """Claim up to `limit` postings in one transaction. None: nothing to do; an empty list: those
    seen were taken or held (look again).

    One ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT n``, the mappings and parties of the batch in
    two queries, and one statement raising every attempt counter, taking the leases (one token
    for the batch) and inserting the running attempts (`_take_leases`; SQLite: an UPDATE and an
    INSERT): committed before the first is sent."""
    with transaction.atomic():
        qs = _claimable(now, connection_id).exclude(pk__in=exclude)
        if db_connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        postings = list(qs.select_related("connection")[:limit])
        if not postings:
            return None
        if db_connection.vendor != "postgresql":
            # No row locks on SQLite: take each with a compare-and-set on what we read.
            postings = [
                p
                for p in postings
                if Posting.objects.filter(pk=p.pk, status=p.status, attempts=p.attempts).update(
                    leased_by=f"claiming:{worker}"
                )
            ]
        resolvers: dict[int, Resolver] = {}
        for posting in postings:
            if posting.connection_id not in resolvers:
                resolvers[posting.connection_id] = Resolver(posting.connection)
        for resolver in resolvers.values():  # the batch's parties: one query a connection
            resolver.prefetch_parties(
                c for p in postings if p.connection_id == resolver.conn.pk for c in _customers_of(p)
            )
        token = f"{worker}:{uuid.uuid4().hex[:12]}"
        # per connection, shared by the batch: a party is ensured once (codes -> ERP ids, and
        # the codes stored as party mappings already)
        shared: dict[int, tuple[dict[str, str], set[str]]] = {}
        taken: list[tuple[Posting, Send, str, dict[str, str], set[str]]] = []
        for posting in postings:
            conn = posting.connection
            was = posting.status
            if posting.status == PostingStatus.IN_FLIGHT:
                # The worker holding the lease stopped (killed, hung past its lease): what it
                # sent may have reached the ERP, so the next send looks it up first.
                PostingAttempt.objects.filter(
                    posting=posting, outcome=AttemptOutcome.RUNNING
                ).update(
                    outcome=AttemptOutcome.UNKNOWN,
                    finished_at=now,
                    error_class="unknown_outcome",
                    error_message=(
                        f"the worker {posting.leased_by or '?'} stopped before recording the "
                        f"outcome (lease expired at {posting.lease_expires_at:%Y-%m-%d %H:%M:%S}"
                        " UTC)"
                    ),
                )
                posting.lookup_first = True
                Posting.objects.filter(pk=posting.pk).update(lookup_first=True)
            resolver = resolvers[conn.pk]
            resolver.missing = []
            learned, saved = shared.setdefault(conn.pk, ({}, set()))
            try:
                send, _parties = build_send(posting, resolver, learned)
            except MissingMappings as exc:
                _hold(posting, conn, exc.missing)
                continue
            if posting.attempts - posting.attempts_at_replay >= conn.max_attempts:
                _give_up(
                    posting, conn, PostingStatus.DEAD, posting.last_error or "attempts exhausted"
                )
                continue
            taken.append((posting, send, was, learned, saved))
        if not taken:
            return []
        attempts = []
        for posting, *_ in taken:
            posting.attempts += 1
            posting.status = PostingStatus.IN_FLIGHT
            posting.lease_expires_at = now + datetime.timedelta(
                seconds=posting.connection.lease_seconds
            )
            posting.leased_by = token
            attempts.append(
                PostingAttempt(
                    posting=posting, number=posting.attempts, worker=worker, started_at=now
                )
            )
        if db_connection.vendor == "postgresql":
            _take_leases(
                taken=[t[0] for t in taken], attempts=attempts, token=token, worker=worker, now=now
            )
        else:
            by_lease: dict[int, list[int]] = {}
            for posting, *_ in taken:
                by_lease.setdefault(posting.connection.lease_seconds, []).append(posting.pk)
            for seconds, ids in by_lease.items():
                Posting.objects.filter(pk__in=ids).update(
                    attempts=F("attempts") + 1,
                    status=PostingStatus.IN_FLIGHT,
                    lease_expires_at=now + datetime.timedelta(seconds=seconds),
                    leased_by=token,
                    updated_at=now,
                )
            PostingAttempt.objects.bulk_create(attempts)
    return [
        Claim(posting, attempt, token, send, learned, was=was, saved=saved)
        for (posting, send, was, learned, saved), attempt in zip(taken, attempts, strict=True)
    ]


def _take_leases(
    *,
    taken: list[Posting],
    attempts: list[PostingAttempt],
    token: str,
    worker: str,
    now: datetime.datetime,
) -> None:
    """The claim's counters, leases and running attempts in ONE statement (PostgreSQL): every
    locked posting's attempt counter up by one, in flight under the batch's token until its
    own lease ends, and its attempt row (running) inserted with the number the counter now
    says. `taken` are locked by the caller; `attempts` (unsaved, one a posting, in order) get
    their ids."""
    sql = f"""
    WITH _taken AS (
        UPDATE {Posting._meta.db_table} AS p
        SET attempts = p.attempts + 1, status = %s, lease_expires_at = l.expires,
            leased_by = %s, updated_at = %s
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS l(id, expires)
        WHERE p.id = l.id
        RETURNING p.id, p.attempts
    )
    INSERT INTO {PostingAttempt._meta.db_table}
        (posting_id, number, worker, started_at, outcome, error_class, error_message, exchanges)
    SELECT id, attempts, %s, %s, %s, '', '', '[]'::jsonb FROM _taken
    RETURNING posting_id, number, id
    """
    with db_connection.cursor() as cur:
        cur.execute(
            sql,
            [
                PostingStatus.IN_FLIGHT,
                token,
                now,
                [p.pk for p in taken],
                [p.lease_expires_at for p in taken],
                worker,
                now,
                AttemptOutcome.RUNNING,
            ],
        )
        ids = {posting_id: (number, pk) for posting_id, number, pk in cur.fetchall()}
    for posting, attempt in zip(taken, attempts, strict=True):
        # the rows are locked since our SELECT: the counter is what we read, plus one
        number, pk = ids[posting.pk]
        assert number == posting.attempts, (posting.pk, number, posting.attempts)
        attempt.pk = pk
        attempt._state.adding = False
        attempt._state.db = db_connection.alias


def _lease_enough(claim: Claim, now: datetime.datetime) -> bool:
    """Whether a claimed posting may still be sent: at least half its lease left, and more than
    the connector's timeout (a posting further down a batch waits for the ones before it)."""
    conn = claim.posting.connection
    assert claim.posting.lease_expires_at is not None
    left = (claim.posting.lease_expires_at - now).total_seconds()
    return left > max(conn.timeout_seconds, conn.lease_seconds / 2)


def _release(claims: list[Claim]) -> None:
    """Give back claimed postings that were not sent (the batch ran out of lease or time): as
    if never claimed (their running attempt, never sent, removed; the counter back)."""
    if not claims:
        return
    with transaction.atomic():
        for claim in claims:
            back = (
                PostingStatus.PENDING
                if claim.was == PostingStatus.PENDING
                else PostingStatus.RETRY_WAIT
            )
            still = Posting.objects.filter(
                pk=claim.posting.pk, leased_by=claim.token, status=PostingStatus.IN_FLIGHT
            ).update(
                status=back,
                attempts=F("attempts") - 1,
                leased_by="",
                lease_expires_at=None,
                next_attempt_at=None if back == PostingStatus.PENDING else timezone.now(),
                updated_at=timezone.now(),
            )
            if still:
                PostingAttempt.objects.filter(
                    pk=claim.attempt.pk, outcome=AttemptOutcome.RUNNING
                ).delete()


@dataclass
class Outcome:
    outcome: str
    record: base.ErpRecord | None = None
    error: base.ConnectorError | None = None
    error_class: str = ""
    message: str = ""


def _send(claim: Claim, exchanges: list[base.Exchange]) -> Outcome:
    posting = claim.posting
    try:
        connector = connector_of(posting.connection)
        connector.recorder = exchanges.append
        # the posting's first attempt cannot have reached the ERP before: no lookup needed
        fresh = posting.attempts == 1 and not posting.lookup_first
        if posting.lookup_first:
            lookup = (
                posting.payload["target_external_id"]
                if posting.document_type == DocumentType.INVOICE_CANCEL
                else posting.external_id
            )
            found = connector.find_by_external_id(posting.document_kind, lookup)
            done = found is not None and (
                found.state == "cancelled"
                if posting.document_type == DocumentType.INVOICE_CANCEL
                else found.posted
            )
            if done:
                return Outcome(AttemptOutcome.POSTED, record=found)
            fresh = found is None
        record = claim.send(connector, fresh)
        if posting.document_type != DocumentType.INVOICE_CANCEL and not record.posted:
            raise base.TransientError(
                f"the ERP answered without error but left {posting.external_id} in state "
                f"{record.state!r}"
            )
        return Outcome(AttemptOutcome.POSTED, record=record)
    except base.UnknownOutcome as exc:
        return Outcome(
            AttemptOutcome.UNKNOWN, error=exc, error_class="unknown_outcome", message=exc.message
        )
    except base.TransientError as exc:
        return Outcome(
            AttemptOutcome.TRANSIENT, error=exc, error_class="transient", message=exc.message
        )
    except base.PermanentError as exc:
        return Outcome(
            AttemptOutcome.PERMANENT, error=exc, error_class="permanent", message=exc.message
        )
    except Exception as exc:  # noqa: BLE001 - a connector bug must not lose the attempt
        log.exception("connector raised an unexpected error for %s", posting.external_id)
        # We cannot tell whether the request was applied: treat it as unknown, look up first.
        return Outcome(
            AttemptOutcome.UNKNOWN,
            error_class="unknown_outcome",
            message=f"{type(exc).__name__}: {exc}",
        )


def _redacted(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, "***")
        return value[:MAX_TEXT]
    if isinstance(value, dict):
        return {
            k: "***"
            if k.lower() in {"password", "authorization", "session"}
            else _redacted(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(v, secrets) for v in value]
    if isinstance(value, Decimal | datetime.date):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_TEXT]


def _exchange_rows(conn: ErpConnection, exchanges: list[base.Exchange]) -> list[dict[str, Any]]:
    secrets = [os.environ.get(conn.password_env, "")] if conn.password_env else []
    return [
        {
            "method": ex.method,
            "request": _redacted(ex.request, secrets),
            "response": _redacted(ex.response, secrets),
            "http_status": ex.http_status,
            "latency_ms": round(ex.latency_ms, 3),
            "error_class": ex.error_class,
        }
        for ex in exchanges[:MAX_EXCHANGES]
    ]


def _close_cases(posting: Posting, resolution: str) -> None:
    for case in ExceptionCase.objects.filter(
        fingerprint__in=[f"posting_failed:{posting.pk}", f"posting_dead:{posting.pk}"],
        status__in=OPEN_STATUSES,
    ):
        case_close(case=case, actor=DRAIN_ACTOR, status="resolved", resolution=resolution)


def _give_up(posting: Posting, conn: ErpConnection, status: str, message: str) -> None:
    posting.status = status
    posting.lease_expires_at = None
    posting.next_attempt_at = None
    posting.last_error = message
    posting.save(
        update_fields=["status", "lease_expires_at", "next_attempt_at", "last_error", "updated_at"]
    )
    kind = "posting_failed" if status == PostingStatus.FAILED else "posting_dead"
    title = (
        f"{conn.name} refused {posting.external_id}"
        if status == PostingStatus.FAILED
        else f"{posting.external_id} could not reach {conn.name} after {posting.attempts} attempts"
    )
    case_open_or_update(
        kind=kind,
        fingerprint=f"{kind}:{posting.pk}",
        title=title,
        actor=DRAIN_ACTOR,
        severity="high",
        error_code=posting.last_error_class or kind,
        error_message=message,
        source=posting,
        amount_at_stake=posting.amount,
        currency_id=posting.currency_id,
        legal_entity_id=posting.legal_entity_id,
        customer_id=posting.customer_id,
        details={
            "posting_id": posting.pk,
            "external_id": posting.external_id,
            "document_type": posting.document_type,
            "connection": conn.name,
            "attempts": posting.attempts,
        },
    )
    audit_record(
        actor=DRAIN_ACTOR,
        action=f"posting.{status}",
        obj=posting,
        before={"status": PostingStatus.IN_FLIGHT},
        after={"status": status, "attempts": posting.attempts},
        reason=message[:500],
    )


#: What finishing an attempt changes on its posting (never the payload: a full save would write
#: the document's JSON again each time).
FINISH_FIELDS = [
    "status",
    "leased_by",
    "lease_expires_at",
    "next_attempt_at",
    "lookup_first",
    "last_error",
    "last_error_class",
    "updated_at",
]


def _finish(
    claim: Claim, outcome: Outcome, exchanges: list[base.Exchange], result: DrainResult
) -> None:
    if (
        db_connection.vendor == "postgresql"
        and outcome.outcome == AttemptOutcome.POSTED
        and outcome.record is not None
        and claim.posting.attempts == 1  # no failed or dead case to close
    ):
        _finish_posted(claim, outcome.record, exchanges, result)
        return
    now = timezone.now()
    with transaction.atomic():
        posting = (
            Posting.objects.select_for_update()
            .select_related("connection")
            .get(pk=claim.posting.pk)
        )
        conn = posting.connection
        rows = _exchange_rows(conn, exchanges)
        statuses = [r["http_status"] for r in rows if r["http_status"] is not None]
        latency = sum((Decimal(str(r["latency_ms"])) for r in rows), Decimal(0))
        PostingAttempt.objects.filter(pk=claim.attempt.pk).update(
            finished_at=now,
            outcome=outcome.outcome,
            error_class=outcome.error_class,
            error_message=outcome.message[:MAX_TEXT],
            http_status=statuses[-1] if statuses else None,
            latency_ms=latency,
            exchanges=rows,
        )
        for code, party_id in claim.learned.items():
            customer = Customer.objects.filter(
                legal_entity_id=posting.legal_entity_id, code=code
            ).first()
            if customer is not None:
                PartyMapping.objects.get_or_create(
                    connection=conn,
                    customer=customer,
                    defaults={"erp_party_id": party_id, "created_by_connector": True},
                )
        if posting.leased_by != claim.token or posting.status != PostingStatus.IN_FLIGHT:
            # Our lease expired and another worker took the posting over: it decides.
            result.lost_lease += 1
            return
        before = {"status": posting.status, "attempts": posting.attempts}
        posting.leased_by = ""
        if outcome.outcome == AttemptOutcome.POSTED and outcome.record is not None:
            rec = outcome.record
            posting.status = PostingStatus.POSTED
            posting.posted_at = now
            posting.lease_expires_at = None
            posting.next_attempt_at = None
            posting.lookup_first = False
            posting.erp_id, posting.erp_number, posting.erp_state = (
                rec.erp_id[:64],
                rec.erp_number[:64],
                rec.state[:32],
            )
            posting.last_error = ""
            posting.last_error_class = ""
            posting.save(
                update_fields=[*FINISH_FIELDS, "posted_at", "erp_id", "erp_number", "erp_state"]
            )
            audit_record(
                actor=DRAIN_ACTOR,
                action="posting.posted",
                obj=posting,
                before=before,
                after={
                    "status": PostingStatus.POSTED,
                    "erp_id": rec.erp_id,
                    "erp_number": rec.erp_number,
                },
            )
            if posting.attempts > 1:  # a first attempt has no failed or dead case to close
                _close_cases(
                    posting,
                    f"posted on attempt {posting.attempts} as {rec.erp_number or rec.erp_id}",
                )
            result.posted += 1
            return
        posting.last_error = outcome.message[:MAX_TEXT]
        posting.last_error_class = outcome.error_class
        if outcome.outcome == AttemptOutcome.UNKNOWN:
            posting.lookup_first = True
        if outcome.outcome == AttemptOutcome.PERMANENT:
            posting.save(
                update_fields=["leased_by", "last_error", "last_error_class", "lookup_first"]
            )
            _give_up(posting, conn, PostingStatus.FAILED, outcome.message)
            result.failed += 1
            return
        used = posting.attempts - posting.attempts_at_replay
        if used >= conn.max_attempts:
            posting.save(
                update_fields=["leased_by", "last_error", "last_error_class", "lookup_first"]
            )
            _give_up(posting, conn, PostingStatus.DEAD, outcome.message)
            result.dead += 1
            return
        wait = backoff_seconds(conn, used)
        posting.status = PostingStatus.RETRY_WAIT
        posting.next_attempt_at = now + datetime.timedelta(seconds=wait)
        posting.lease_expires_at = None
        posting.save(update_fields=FINISH_FIELDS)
        audit_record(
            actor=DRAIN_ACTOR,
            action="posting.retry_wait",
            obj=posting,
            before=before,
            after={
                "status": PostingStatus.RETRY_WAIT,
                "next_attempt_at": posting.next_attempt_at.isoformat(),
                "error_class": outcome.error_class,
            },
            reason=outcome.message[:500],
        )
        result.retry += 1


#: The name of the prepared finish statement (`_finish_posted`) on a connection.
FINISH_POSTED = "erp_sync_finish_posted"


class _PreparedStatements(threading.local):
    """Per thread: the raw database connection the statements were prepared on, and which."""

    def __init__(self) -> None:
        self.by_thread: dict[str, tuple[Any, str]] = {}  # name -> (raw connection, its text)


_PREPARED = _PreparedStatements()


def _prepared(name: str, sql: str, nparams: int) -> str:
    """``EXECUTE name(%s, ...)`` for `sql` (psycopg2's ``%s`` placeholders), PREPAREd first on
    this connection if it is not yet (psycopg2 never prepares by itself). A prepared statement
    lives as long as its session and does not roll back with a transaction; a new connection
    (Django reconnects after CONN_MAX_AGE or an error) or another text prepares it again. The
    name carries a hash of the text, so two texts never share one."""
    db_connection.ensure_connection()
    raw = db_connection.connection
    known = _PREPARED.by_thread.get(name)
    digest = hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:12]
    full = f"{name}_{digest}"
    if known is None or known[0] is not raw or known[1] != full:
        with db_connection.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", [full])
            if cur.fetchone() is None:
                numbered = iter(range(1, nparams + 1))
                text = re.sub(r"%s", lambda _m: f"${next(numbered)}", sql)
                cur.execute(f"PREPARE {full} AS {text}")
        _PREPARED.by_thread[name] = (raw, full)
    return f"EXECUTE {full}({', '.join(['%s'] * nparams)})"


def _finish_posted(
    claim: Claim, rec: base.ErpRecord, exchanges: list[base.Exchange], result: DrainResult
) -> None:
    """A first attempt that posted, finished in ONE statement (PostgreSQL; in autocommit the
    statement is its transaction): the attempt's outcome and exchanges, the parties the
    connector created (as party mappings), the posting `posted` if we still hold its lease,
    and then its audit entry appended to the chain (exceptions' audit_append_cte), so the
    chain head is locked for the end of this one statement only. A lease lost meanwhile
    records the attempt and leaves the posting (and the audit trail) to the new holder.
    Its commit is asynchronous (decision 54); the claim's, before the ERP call, is not."""
    posting, conn = claim.posting, claim.posting.connection
    now = timezone.now()
    rows = _exchange_rows(conn, exchanges)
    statuses = [r["http_status"] for r in rows if r["http_status"] is not None]
    latency = sum((Decimal(str(r["latency_ms"])) for r in rows), Decimal(0))
    codes = [code for code in claim.learned if code not in claim.saved]
    audit_sql, audit_params = audit_append_cte(
        actor=DRAIN_ACTOR,
        spec=AuditSpec.of(
            posting,
            "posting.posted",
            before={"status": PostingStatus.IN_FLIGHT, "attempts": posting.attempts},
            after={
                "status": PostingStatus.POSTED,
                "erp_id": rec.erp_id,
                "erp_number": rec.erp_number,
            },
        ),
        guard="_posted",
    )
    sql = f"""
    WITH _attempt AS (
        UPDATE {PostingAttempt._meta.db_table}
        SET finished_at = %s, outcome = %s, error_class = '', error_message = '',
            http_status = %s, latency_ms = %s, exchanges = %s::jsonb
        WHERE id = %s RETURNING id
    ),
    _parties AS (
        INSERT INTO {PartyMapping._meta.db_table}
            (connection_id, customer_id, erp_party_id, created_by_connector, created_at)
        SELECT %s, c.id, learned.party, true, %s
        FROM unnest(%s::text[], %s::text[]) AS learned(code, party)
        JOIN {Customer._meta.db_table} AS c ON c.legal_entity_id = %s AND c.code = learned.code
        ON CONFLICT (connection_id, customer_id) DO NOTHING
        RETURNING id
    ),
    _posted AS (
        UPDATE {Posting._meta.db_table}
        SET status = %s, posted_at = %s, lease_expires_at = NULL, next_attempt_at = NULL,
            lookup_first = false, leased_by = '', erp_id = %s, erp_number = %s, erp_state = %s,
            last_error = '', last_error_class = '', updated_at = %s
        WHERE id = %s AND leased_by = %s AND status = %s
        RETURNING id
    ),
    {audit_sql}
    SELECT (SELECT count(*) FROM _posted), (SELECT count(*) FROM _audit_entry)
    """
    params = [
        now,
        AttemptOutcome.POSTED,
        statuses[-1] if statuses else None,
        latency,
        orjson.dumps(rows).decode(),
        claim.attempt.pk,
        conn.pk,
        now,
        codes,
        [claim.learned[c] for c in codes],
        posting.legal_entity_id,
        PostingStatus.POSTED,
        now,
        rec.erp_id[:64],
        rec.erp_number[:64],
        rec.state[:32],
        now,
        posting.pk,
        claim.token,
        PostingStatus.IN_FLIGHT,
        *audit_params,
    ]
    # the statement's text is the same every time: parsed and planned once per connection
    execute = _prepared(FINISH_POSTED, sql, len(params))
    if not db_connection.in_atomic_block:
        # one implicit transaction; its commit does not wait for the WAL flush (decision 54:
        # a finish lost with a crash of PostgreSQL itself is a posting left in flight, which
        # the next claim looks up in the ERP, as after a worker killed before its finish)
        execute = "SET LOCAL synchronous_commit = off;" + execute
    with db_connection.cursor() as cur:
        try:
            cur.execute(execute, params)
        except Exception:
            _PREPARED.by_thread.clear()  # look again (and prepare again) on the next finish
            raise
        posted, audited = cur.fetchone()
    claim.saved.update(codes)
    if not posted:
        result.lost_lease += 1
        return
    assert audited == 1
    posting.status = PostingStatus.POSTED
    posting.posted_at = now
    posting.erp_id, posting.erp_number, posting.erp_state = (
        rec.erp_id[:64],
        rec.erp_number[:64],
        rec.state[:32],
    )
    result.posted += 1


def outbox_drain(
    *,
    worker: str = "",
    connection_id: int | None = None,
    max_postings: int = 1000,
    deadline_seconds: float | None = None,
) -> DrainResult:
    """Send due postings until none is left, `max_postings` were claimed, or the deadline passed.

    Safe to run twice and in several processes at once (claims skip locked rows; leases
    expire). Call it outside any transaction, so each step commits on its own. Returns what happened, with the time spent inside
    the ERP calls (so callers can tell our overhead from the ERP's time).
    """
    worker = worker or f"pid{os.getpid()}"
    result = DrainResult()
    started = time.monotonic()
    skipped: set[int] = set()
    while result.claimed < max_postings:
        if deadline_seconds is not None and time.monotonic() - started > deadline_seconds:
            break
        t0 = time.perf_counter()
        claims = _claim_batch(
            connection_id=connection_id,
            worker=worker,
            now=timezone.now(),
            exclude=skipped,
            limit=min(CLAIM_BATCH, max_postings - result.claimed),
        )
        if claims is None:
            break
        if not claims:
            continue
        # the batch's claim is work for each of its postings: each carries its share
        claim_share = (time.perf_counter() - t0) / len(claims)
        for i, claim in enumerate(claims):
            t0 = time.perf_counter()
            late = deadline_seconds is not None and time.monotonic() - started > deadline_seconds
            if i and (late or not _lease_enough(claim, timezone.now())):
                _release(claims[i:])
                break
            result.claimed += 1
            result.posting_ids.append(claim.posting.pk)
            exchanges: list[base.Exchange] = []
            t1 = time.perf_counter()
            outcome = _send(claim, exchanges)
            erp = time.perf_counter() - t1
            result.erp_seconds += erp
            _finish(claim, outcome, exchanges, result)
            result.erp_seconds_each.append(erp)
            result.total_seconds_each.append(time.perf_counter() - t0 + claim_share)
    result.held = Posting.objects.filter(
        status=PostingStatus.HELD, **({"connection_id": connection_id} if connection_id else {})
    ).count()
    return result


# --------------------------------------------------------------------------- replay and release


REPLAYABLE = (PostingStatus.FAILED, PostingStatus.DEAD, PostingStatus.HELD)


def posting_replay(*, posting: Posting, actor: Actor, reason: str) -> Posting:
    """Send a failed, dead or held posting again after a correction (audited; the exception
    queue's button calls this). It is looked up in the ERP first and gets a fresh retry budget."""
    if not reason.strip():
        raise AppError("Replaying a posting needs a reason.", code=error_codes.REASON_REQUIRED)
    with transaction.atomic():
        locked = Posting.objects.select_for_update().get(pk=posting.pk)
        if locked.status not in REPLAYABLE:
            raise AppError(
                f"{locked.external_id} is {locked.status}; only failed, dead or held postings are "
                "replayed.",
                code=error_codes.POSTING_NOT_REPLAYABLE,
                extra={"status": locked.status},
            )
        before = {"status": locked.status, "attempts": locked.attempts}
        locked.status = PostingStatus.PENDING
        locked.attempts_at_replay = locked.attempts
        locked.next_attempt_at = None
        locked.lease_expires_at = None
        locked.lookup_first = locked.attempts > 0
        locked.save()
        audit_record(
            actor=actor,
            action="posting.replay",
            obj=locked,
            before=before,
            after={"status": PostingStatus.PENDING},
            reason=reason,
        )
    return locked


def postings_release_held(*, connection: ErpConnection, actor: Actor) -> int:
    """Held postings of a connection go back to pending (after a mapping was added); those still
    missing something are held again by the next drain, with their case."""
    with transaction.atomic():
        ids = list(
            Posting.objects.select_for_update()
            .filter(connection=connection, status=PostingStatus.HELD)
            .values_list("pk", flat=True)
        )
        if not ids:
            return 0
        Posting.objects.filter(pk__in=ids).update(
            status=PostingStatus.PENDING,
            last_error="",
            last_error_class="",
            updated_at=timezone.now(),
        )
        audit_record(
            actor=actor,
            action="postings.release_held",
            obj=connection,
            after={"released": len(ids), "posting_ids": ids[:200]},
        )
    return len(ids)
