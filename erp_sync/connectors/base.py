"""The ERP-neutral connector interface and the canonical documents it carries.

erp_sync's outbox hands a connector one canonical document at a time (built by
the ledger writer from our own rows) and the connector maps it to its ERP's
payload. Every connector promises:

- **Idempotency by external id.** Every document carries a deterministic
  `external_id` (e.g. ``ll-inv-us-42``). A `post_*` call first looks the
  external id up in the ERP: posted there already -> return it; a draft left
  behind by an earlier attempt -> post that draft; absent -> create and post.
  So calling `post_*` twice, or after an attempt of unknown outcome, leaves
  exactly one document in the ERP. ``fresh=True`` tells the connector that no
  earlier attempt can have reached the ERP (the posting's first attempt, or
  one just looked up and not found): a connector whose ERP itself refuses a
  second document under one external id (Tryton with Ledgerline's module) may
  then create at once and look up only when the ERP refuses the create; a
  connector without such a guarantee ignores it and looks up as always.
- **Errors sorted in two.** `TransientError` (time-out, connection refused or
  reset, 429, 5xx, a locked database): the same call may succeed later.
  `UnknownOutcome` (a `TransientError`): the request may have reached the ERP
  and been applied; the next attempt must look the document up first (the
  `post_*` contract above already does). `PermanentError` (validation, closed
  period, unknown account, unbalanced): the same call will fail again until a
  person changes something. `message` is always the ERP's own words.
- **Every exchange recorded.** The connector calls `recorder(Exchange(...))`
  once per request it sends, answered or not, with secrets redacted; the
  outbox stores them on the `PostingAttempt`.
- **State read back.** After posting, the connector reads the document back
  and returns its state; an ERP that answers "ok" and leaves a draft is an
  error (transient: the next attempt posts the draft).
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Literal

DocumentKind = Literal["invoice", "credit_memo", "journal"]


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ConnectionConfig:
    """What a connector needs to reach its ERP (secrets already read from the environment)."""

    kind: str
    base_url: str
    database: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    company: str = ""  # the ERP's company for this legal entity (Tryton: company party name or id)
    timeout_seconds: float = 30.0
    options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- canonical documents


@dataclass(frozen=True)
class Party:
    """Our customer, and the ERP party it maps to once known."""

    code: str  # Ledgerline's customer code, unique per legal entity
    name: str
    erp_party_id: str | None = None  # None: the connector creates (or finds) it on first use
    tax_id: str = ""


@dataclass(frozen=True)
class DocumentLine:
    source_line_id: int  # billing.InvoiceLine id (traceability)
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal  # net, rounded to the currency's minor unit
    account: str  # the ERP revenue (or deferred revenue) account code


@dataclass(frozen=True)
class DocumentTax:
    rate: Decimal  # 0.19 for 19 %
    base: Decimal
    amount: Decimal
    account: str  # the ERP tax payable account code
    name: str = ""


@dataclass(frozen=True)
class Document:
    """An invoice or a credit memo as the ERP receives it (credit memos carry positive amounts
    here and `kind="credit_memo"`; the connector books them the ERP's way)."""

    external_id: str
    kind: Literal["invoice", "credit_memo"]
    number: str
    issue_date: datetime.date
    due_date: datetime.date | None
    currency: str
    party: Party
    receivable_account: str
    lines: tuple[DocumentLine, ...]
    taxes: tuple[DocumentTax, ...]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    credits_external_id: str | None = None  # the invoice a credit memo corrects
    description: str = ""


@dataclass(frozen=True)
class JournalLine:
    account: str
    debit: Decimal
    credit: Decimal
    party: Party | None = None  # required by the ERP on receivable/payable accounts
    description: str = ""


@dataclass(frozen=True)
class Journal:
    """A balanced journal entry (debits = credits) in one currency."""

    external_id: str
    date: datetime.date
    currency: str
    description: str
    lines: tuple[JournalLine, ...]


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class ReadBackLine:
    account: str
    debit: Decimal
    credit: Decimal


@dataclass(frozen=True)
class ErpRecord:
    """A document as the ERP holds it, read back by external id."""

    external_id: str
    kind: DocumentKind
    erp_id: str
    erp_number: str
    state: str  # the ERP's own word: "draft", "posted", "paid", "cancelled", ...
    posted: bool
    currency: str
    total: Decimal
    tax_total: Decimal
    date: datetime.date | None = None
    lines: tuple[ReadBackLine, ...] = ()


@dataclass(frozen=True)
class Exchange:
    """One request to the ERP and what came back (secrets redacted)."""

    method: str
    request: Any
    response: Any
    http_status: int | None
    latency_ms: float
    error_class: str = ""  # "", "transient", "unknown_outcome", "permanent"


Recorder = Callable[[Exchange], None]


# ---------------------------------------------------------------- errors


class ConnectorError(Exception):
    transient: ClassVar[bool] = False

    def __init__(
        self, message: str, *, code: str = "", extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message  # the ERP's own words where it gave any
        self.code = code
        self.extra = extra or {}


class TransientError(ConnectorError):
    transient = True


class UnknownOutcome(TransientError):
    """The request may have been applied: look the document up before sending it again."""


class PermanentError(ConnectorError):
    transient = False


# ---------------------------------------------------------------- the interface


class Connector(abc.ABC):
    kind: ClassVar[str]

    def __init__(self, config: ConnectionConfig, recorder: Recorder | None = None) -> None:
        self.config = config
        self.recorder: Recorder = recorder or (lambda exchange: None)

    @abc.abstractmethod
    def ensure_party(self, party: Party) -> str:
        """The ERP party id for our customer: the mapped one, or one found/created by code."""

    @abc.abstractmethod
    def post_invoice(self, document: Document, *, fresh: bool = False) -> ErpRecord: ...

    @abc.abstractmethod
    def post_credit_memo(self, document: Document, *, fresh: bool = False) -> ErpRecord: ...

    @abc.abstractmethod
    def post_journal(self, journal: Journal, *, fresh: bool = False) -> ErpRecord: ...

    @abc.abstractmethod
    def cancel_invoice(
        self, *, external_id: str, reason: str, credit_external_id: str | None = None
    ) -> ErpRecord:
        """Void a posted invoice in the ERP: cancel it, or credit it in full, the ERP's way.
        `credit_external_id` names the credit note when the ERP makes one (our cancellation
        posting's external id, so reconciliation knows the document); returns the invoice."""

    @abc.abstractmethod
    def reverse_journal(
        self, *, external_id: str, reversal_external_id: str, date: datetime.date
    ) -> ErpRecord:
        """Reverse a posted journal entry with a linked reversal entry."""

    @abc.abstractmethod
    def find_by_external_id(self, kind: DocumentKind, external_id: str) -> ErpRecord | None: ...

    @abc.abstractmethod
    def external_ids(
        self, kind: DocumentKind, *, start: datetime.date, end: datetime.date, prefix: str
    ) -> list[str]:
        """Every external id with our prefix the ERP holds for documents dated in [start, end)
        (reconciliation looks for documents we have no record of)."""
