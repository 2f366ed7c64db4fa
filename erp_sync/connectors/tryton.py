"""The Tryton connector: canonical documents to a trytond 8.2 server over JSON-RPC.

What goes where in Tryton:
- invoices and credit notes: ``account.invoice`` (type ``out``; a credit note is
  an invoice with negative quantities, as Tryton books one); our external id in
  ``reference`` and in ``ledgerline_external_id``;
- journal entries: ``account.move`` in the connection's journal (``MISC`` by
  default); our external id in ``description`` and ``ledgerline_external_id``;
- customers: ``party.party`` with code ``<party_code_prefix><our code>``, found
  by that code or created on first use (Tryton's code is unique, so two workers
  creating the same party at once leave one);
- the company of every request: the connection's ``company`` (a Tryton company
  name or id) in the RPC context; the API user is a member of every company.

``ledgerline_external_id`` comes from Ledgerline's own Tryton module
(erp/tryton/modules/ledgerline): a UNIQUE index in Tryton's database, so Tryton
itself refuses a second document under one external id, whatever happens to us.
On top of that the connector looks the external id up before every create: a
posted document is returned as it is, a draft left behind by an earlier attempt
(created, then the answer to ``post`` lost) is posted instead of creating
another. After ``post`` the document is read back; Tryton answering a post and
leaving a draft is a TransientError (the next attempt posts the draft).

Voids and reversals go through Tryton's wizards, the only way Tryton exposes
them over RPC (``Invoice.credit`` is not in ``__rpc__``):
``wizard.account.invoice.credit`` with ``with_refund`` (a posted credit note
that cancels the invoice) and ``wizard.account.move.cancel`` with ``reversal``
(a posted reversal move). A wizard finds its records through ``active_model``,
``active_id`` and ``active_ids`` in the context, and runs in one transaction.

Errors: Tryton's UserError (closed period, unbalanced move, a value outside a
field's domain, ...) is a PermanentError with Tryton's own message; a UserWarning
(an invoice due in the past, ...) is acknowledged with
``model.res.user.warning.skip`` and the call repeated; an expired session logs
in again (TrytonClient). Time-outs and connection resets after the request was
sent are UnknownOutcome for writes (the write may have committed); for reads,
and whenever the request never left, TransientError. HTTP 429/5xx, a locked
database and a concurrent update are TransientError.

Every HTTP request, logins included, is handed to ``self.recorder`` as an
Exchange with the password and the session token redacted.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from erp_sync.connectors.base import (
    ConnectionConfig,
    Connector,
    Document,
    DocumentKind,
    ErpRecord,
    Exchange,
    Journal,
    Party,
    PermanentError,
    ReadBackLine,
    Recorder,
    TransientError,
    UnknownOutcome,
)
from erp_sync.tryton_rpc import (
    TrytonClient,
    TrytonError,
    TrytonLoginError,
    TrytonPermanentError,
    TrytonTransientError,
    _error_from_payload,
)

__all__ = ["TrytonConnector"]

REDACTED = "***"
# The message of Ledgerline's module's unique constraint (erp/tryton/modules/ledgerline/message.xml)
DUPLICATE_MESSAGE = "Ledgerline external ID already used"
# Tryton's default price_digits (account_invoice): a unit price with more places is refused
PRICE_PLACES = 4
MAX_WARNINGS = 5  # UserWarnings acknowledged for one call before giving up
READ_METHODS = frozenset(
    {"search", "search_read", "read", "search_count", "get_preferences", "fields_get"}
)
INVOICE_FIELDS = [
    "state",
    "number",
    "reference",
    "ledgerline_external_id",
    "total_amount",
    "tax_amount",
    "untaxed_amount",
    "currency.code",
    "invoice_date",
    "move",
    "company",
]
MOVE_FIELDS = ["state", "number", "description", "ledgerline_external_id", "date", "company"]
LINE_FIELDS = ["account.code", "debit", "credit"]
#: A move with its lines in one read (Tryton reads x2many fields through dotted names)
MOVE_READ = [*MOVE_FIELDS, *(f"lines.{name}" for name in LINE_FIELDS)]
#: An invoice with the lines of its accounting move
INVOICE_READ = [*INVOICE_FIELDS, *(f"move.lines.{name}" for name in LINE_FIELDS)]


def _is_write(method: str) -> bool:
    """Whether a call may change Tryton (so a lost answer leaves its outcome unknown)."""
    if method.startswith("common."):
        return False
    name = method.rsplit(".", 1)[-1]
    if method.startswith("wizard."):
        return name == "execute"
    return name not in READ_METHODS


def _reached_server(exc: BaseException | None) -> bool:
    """Whether a failed HTTP request may have reached trytond: anything but a refused or
    timed-out connection (the request left once the connection was open)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.Timeout):
        return True  # read time-out: the request was sent
    if isinstance(exc, requests.ConnectionError):
        reason: Any = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
        return not isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return True


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (REDACTED if k.lower() in {"password", "session"} else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _minor(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


class _RecordingHttp:
    """Stands in for TrytonClient's requests.Session: sends, times and records each request."""

    def __init__(self, connector: TrytonConnector, http: requests.Session) -> None:
        self.connector = connector
        self.http = http

    def post(self, url: str, data: str, headers: dict[str, str], timeout: Any) -> requests.Response:
        body = json.loads(data)
        method = str(body.get("method", ""))
        request = {"method": method, "params": _redact(body.get("params"))}
        if method == "common.db.login" and len(request["params"]) > 1:
            request["params"][1] = {"password": REDACTED}
        started = time.perf_counter()
        try:
            response = self.http.post(url, data=data, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            error_class = (
                "unknown_outcome" if _is_write(method) and _reached_server(exc) else "transient"
            )
            self._record(method, request, {"exception": repr(exc)}, None, started, error_class)
            raise
        self._record(
            method,
            request,
            self._response_body(method, response),
            response.status_code,
            started,
            self._error_class(method, response),
        )
        return response

    def _response_body(self, method: str, response: requests.Response) -> Any:
        try:
            payload = json.loads(response.text)
        except ValueError:
            return {"text": response.text[:2000]}
        if method == "common.db.login" and isinstance(payload, dict):
            result = payload.get("result")
            if isinstance(result, list) and len(result) > 1:
                payload["result"] = [result[0], REDACTED, *result[2:]]
        return _redact(payload)

    def _error_class(self, method: str, response: requests.Response) -> str:
        status = response.status_code
        if status == 401:
            return "permanent" if method == "common.db.login" else "transient"
        if status == 429 or status >= 500:
            return "transient"
        if status != 200:
            return "permanent"
        try:
            payload = json.loads(response.text)
        except ValueError:
            return "transient"
        error = payload.get("error") if isinstance(payload, dict) else None
        if error is None:
            return ""
        mapped = _error_from_payload(method, error)
        return "transient" if isinstance(mapped, TrytonTransientError) else "permanent"

    def _record(
        self,
        method: str,
        request: Any,
        response: Any,
        status: int | None,
        started: float,
        error_class: str,
    ) -> None:
        self.connector.recorder(
            Exchange(
                method=method,
                request=request,
                response=response,
                http_status=status,
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                error_class=error_class,
            )
        )


class TrytonConnector(Connector):
    """One Tryton company (``config.company``) in one Tryton database.

    Options (``config.options``): ``journal`` (code of the journal moves go to,
    default ``MISC``), ``invoice_journal`` (default ``REV``), ``party_code_prefix``
    (default ``""``), ``payment_term`` (name; default none: the receivable falls due
    on the document's due date).
    """

    kind = "tryton"

    def __init__(
        self,
        config: ConnectionConfig,
        recorder: Recorder | None = None,
        *,
        http: requests.Session | None = None,
    ) -> None:
        super().__init__(config, recorder)
        self.client = TrytonClient(
            config.base_url,
            config.database,
            config.login,
            config.password,
            timeout=(min(5.0, config.timeout_seconds), config.timeout_seconds),
            # a duck-typed Session: TrytonClient only calls its post()
            http=_RecordingHttp(self, http or requests.Session()),  # type: ignore[arg-type]
        )
        self.options = config.options
        self._company: dict[str, Any] | None = None
        self._ids: dict[tuple[str, str], int] = {}  # (model, code) -> id, per company
        self._parties: dict[str, tuple[int, int]] = {}  # Tryton party code -> (party, address)

    # ------------------------------------------------------------------ calls

    def _context(self) -> dict[str, Any]:
        company = self.company()
        return {"company": company["id"]}

    def _rpc(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """One call with the errors of tryton_rpc sorted into the connector's three."""
        try:
            return self.client.call(method, *params, context=context)
        except TrytonTransientError as exc:
            # an HTTP status (429, 5xx) is Tryton's answer: its transaction did not commit
            lost = isinstance(exc.__cause__, requests.RequestException)
            if lost and _is_write(method) and _reached_server(exc.__cause__):
                raise UnknownOutcome(
                    f"{exc} (the request may have been applied in Tryton)",
                    code="unknown_outcome",
                    extra=_extra(exc),
                ) from exc
            raise TransientError(str(exc), code="transient", extra=_extra(exc)) from exc
        except TrytonLoginError as exc:
            raise PermanentError(exc.message, code="login", extra=_extra(exc)) from exc
        except TrytonPermanentError as exc:
            if exc.tryton_type == "UserWarning":
                raise _Warning(exc) from exc
            code = "duplicate_external_id" if DUPLICATE_MESSAGE in exc.message else "tryton"
            raise PermanentError(exc.message, code=code, extra=_extra(exc)) from exc

    def _call(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """A call in the company's context; Tryton's UserWarnings acknowledged (for this user,
        this once, as a person clicking "Yes" in the client does) and the call repeated."""
        ctx = {**self._context(), **(context or {})}
        for _ in range(MAX_WARNINGS):
            try:
                return self._rpc(method, *params, context=ctx)
            except _Warning as warning:
                self._rpc("model.res.user.warning.skip", warning.name, False, context=ctx)
        raise PermanentError(
            f"Tryton kept warning on {method} after {MAX_WARNINGS} acknowledgements",
            code="tryton_warning",
        )

    def _wizard(
        self, name: str, model: str, record_id: int, data: dict[str, Any], state: str
    ) -> Any:
        ctx = {"active_model": model, "active_id": record_id, "active_ids": [record_id]}
        session, _start, _end = self._call(f"wizard.{name}.create", context=ctx)
        try:
            return self._call(f"wizard.{name}.execute", session, data, state, context=ctx)
        finally:
            try:
                self._call(f"wizard.{name}.delete", session, context=ctx)
            except (TransientError, PermanentError):
                pass  # an abandoned wizard session is only a row Tryton expires itself

    # ------------------------------------------------------------------ company, codes

    def company(self) -> dict[str, Any]:
        """The connection's Tryton company: id, name and currency code."""
        if self._company is None:
            ref = str(self.config.company).strip()
            domain: list[Any] = (
                [("id", "=", int(ref))] if ref.isdigit() else [("party.name", "=", ref)]
            )
            if not ref:
                domain = []
            found = self._rpc(
                "model.company.company.search_read",
                domain,
                0,
                2,
                None,
                ["rec_name", "currency.code"],
            )
            if len(found) != 1:
                raise PermanentError(
                    f"Tryton has no company {ref!r} in database {self.config.database!r}"
                    if not found
                    else f"Tryton has several companies; name one in the connection ({ref!r})",
                    code="unknown_company",
                )
            (row,) = found
            self._company = {
                "id": row["id"],
                "name": row["rec_name"],
                "currency": row["currency."]["code"],
            }
        return self._company

    def _id(self, model: str, code: str, *, what: str, field: str = "code") -> int:
        key = (model, code)
        if key not in self._ids:
            domain: list[Any] = [(field, "=", code)]
            if model == "account.account":
                domain.append(("company", "=", self.company()["id"]))
            found = self._call(f"model.{model}.search", domain, 0, 2, None)
            if len(found) != 1:
                raise PermanentError(
                    f"Tryton has no {what} {code!r} in company {self.company()['name']!r}"
                    if not found
                    else f"Tryton has several {what}s {code!r} in company "
                    f"{self.company()['name']!r}",
                    code=f"unknown_{what.replace(' ', '_')}",
                )
            self._ids[key] = int(found[0])
        return self._ids[key]

    def _account(self, code: str) -> int:
        return self._id("account.account", code, what="account")

    def _currency(self, code: str) -> int:
        return self._id("currency.currency", code, what="currency")

    def _journal(self, option: str, default: str) -> int:
        return self._id("account.journal", str(self.options.get(option, default)), what="journal")

    def _period(self, day: datetime.date) -> int:
        """The company's standard period holding ``day`` (its id never changes; whether it is
        open is Tryton's to say when the move is created)."""
        key = ("account.period", day.isoformat())
        if key in self._ids:
            return self._ids[key]
        found = self._call(
            "model.account.period.search",
            [
                ("company", "=", self.company()["id"]),
                ("type", "=", "standard"),
                ("start_date", "<=", day),
                ("end_date", ">=", day),
            ],
            0,
            1,
            None,
        )
        if not found:
            raise PermanentError(
                f"Tryton has no fiscal period for {day.isoformat()} in company "
                f"{self.company()['name']!r}",
                code="no_period",
            )
        self._ids[key] = int(found[0])
        return self._ids[key]

    # ------------------------------------------------------------------ parties

    def party_code(self, party: Party) -> str:
        return f"{self.options.get('party_code_prefix', '')}{party.code}"

    def ensure_party(self, party: Party) -> str:
        return str(self._party(party)[0])

    def _party(self, party: Party) -> tuple[int, int]:
        """(party id, invoice address id): the mapped party, or found by code, or created; one
        call for a party this connector has not met yet (its addresses read with it), cached
        under its code and its id."""
        code = self.party_code(party)
        key = f"id:{party.erp_party_id}" if party.erp_party_id else code
        if key in self._parties:
            return self._parties[key]
        if party.erp_party_id:
            rows = self._call("model.party.party.read", [int(party.erp_party_id)], ["addresses"])
        else:
            rows = self._find_party(code)
            if not rows:
                try:
                    (created,) = self._call(
                        "model.party.party.create",
                        [{"name": party.name, "code": code, "addresses": [["create", [{}]]]}],
                    )
                except PermanentError:
                    # Tryton's unique code: another worker created it just now
                    if not (rows := self._find_party(code)):
                        raise
                else:
                    rows = self._call("model.party.party.read", [int(created)], ["addresses"])
        (row,) = rows
        party_id = int(row["id"])
        addresses = sorted(int(a) for a in row["addresses"])
        if addresses:
            address = addresses[0]
        else:
            (created_address,) = self._call("model.party.address.create", [{"party": party_id}])
            address = int(created_address)
        found = (party_id, address)
        self._parties[key] = self._parties[f"id:{party_id}"] = found
        return found

    def _find_party(self, code: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call(
            "model.party.party.search_read", [("code", "=", code)], 0, 1, None, ["addresses"]
        )
        return rows

    # ------------------------------------------------------------------ invoices

    def post_invoice(self, document: Document, *, fresh: bool = False) -> ErpRecord:
        return self._post_document(document, "invoice", fresh)

    def post_credit_memo(self, document: Document, *, fresh: bool = False) -> ErpRecord:
        return self._post_document(document, "credit_memo", fresh)

    def _post_document(self, document: Document, kind: DocumentKind, fresh: bool) -> ErpRecord:
        """Two calls for a fresh document (create; post with its read-back), three or more when
        an earlier attempt may have left something behind (looked up first)."""
        if document.kind != kind:
            raise PermanentError(
                f"{document.external_id} is a {document.kind}, not a {kind}", code="wrong_kind"
            )
        invoice_id, row = self._find_or_create(
            "account.invoice",
            lambda: self._find_invoice_row(document.external_id),
            lambda: self._invoice_values(document),
            fresh=fresh,
        )
        if row is not None:
            record = self._invoice_record(row)
            if record.kind != kind:
                raise PermanentError(
                    f"Tryton holds {document.external_id} as a {record.kind}, not a {kind}",
                    code="wrong_kind",
                )
            if record.posted or record.state == "cancelled":
                return record
            if record.date is not None and record.date != document.issue_date:
                # a draft left by an attempt Tryton refused (e.g. a closed period), since
                # re-dated by the exception queue: post it on the date we send now
                self._call(
                    "model.account.invoice.write",
                    [invoice_id],
                    {
                        "invoice_date": document.issue_date,
                        "payment_term_date": document.due_date or document.issue_date,
                    },
                )
        row = self._post_and_read("account.invoice", invoice_id, INVOICE_FIELDS)
        return self._posted(document.external_id, self._invoice_record(row))

    def _find_or_create(
        self,
        model: str,
        find: Callable[[], dict[str, Any] | None],
        values: Callable[[], dict[str, Any]],
        *,
        fresh: bool = False,
    ) -> tuple[int, dict[str, Any] | None]:
        """(id, row): the document found by its external id (row), or created now (row None).
        ``fresh``: no lookup before the create (no earlier attempt can have made it; should one
        have, Tryton's unique index refuses the create). Tryton refusing the create under our
        external id means another attempt created it meanwhile: then it is looked up."""
        if not fresh:
            row = find()
            if row is not None:
                return int(row["id"]), row
        try:
            (created,) = self._call(f"model.{model}.create", [values()])
            return int(created), None
        except PermanentError as exc:
            if exc.code != "duplicate_external_id":
                raise
            row = find()
            if row is None:
                raise
            return int(row["id"]), row

    def _post_and_read(self, model: str, record_id: int, fields: list[str]) -> dict[str, Any]:
        """Click "post" and read the record back: one call, ``ledgerline_post`` of Ledgerline's
        Tryton module (post and read in one transaction). Tryton refuses the button on a
        document posted meanwhile (an earlier attempt whose answer we never saw finished after
        all): posted is what we wanted. An answer without the record (not the module's) is
        read back with a second call."""
        try:
            answer = self._call(f"model.{model}.ledgerline_post", [record_id], fields)
        except PermanentError:
            (row,) = self._call(f"model.{model}.read", [record_id], fields)
            if row["state"] not in ("posted", "paid"):
                raise
            return dict(row)
        if isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], dict):
            return answer[0]
        (row,) = self._call(f"model.{model}.read", [record_id], fields)
        return dict(row)

    @staticmethod
    def _posted(external_id: str, record: ErpRecord) -> ErpRecord:
        if not record.posted:
            raise TransientError(
                f"Tryton answered the post of {external_id} but left it in state "
                f"{record.state!r}; the next attempt posts it",
                code="left_draft",
            )
        return record

    def _invoice_values(self, document: Document) -> dict[str, Any]:
        sign = Decimal(-1) if document.kind == "credit_memo" else Decimal(1)
        places = self._currency_places(document.currency)
        party, address = self._party(document.party)
        lines = [self._invoice_line(line, sign, places) for line in document.lines]
        taxes = [
            {
                "manual": True,
                "description": tax.name or f"Tax {(tax.rate * 100).normalize()} %",
                "account": self._account(tax.account),
                "base": sign * tax.base,
                "amount": sign * tax.amount,
            }
            for tax in document.taxes
        ]
        values: dict[str, Any] = {
            "company": self.company()["id"],
            "type": "out",
            "party": party,
            "invoice_address": address,
            "account": self._account(document.receivable_account),
            "journal": self._journal("invoice_journal", "REV"),
            "currency": self._currency(document.currency),
            "invoice_date": document.issue_date,
            "payment_term_date": document.due_date or document.issue_date,
            "reference": document.external_id,
            "ledgerline_external_id": document.external_id,
            "description": (document.description or document.number)[:200],
            "lines": [["create", lines]],
        }
        if taxes:
            values["taxes"] = [["create", taxes]]
        if self.options.get("payment_term"):
            values["payment_term"] = self._id(
                "account.invoice.payment_term",
                str(self.options["payment_term"]),
                what="payment term",
                field="name",
            )
        return values

    def _currency_places(self, code: str) -> int:
        """The currency's minor unit as Tryton holds it (JPY: 0)."""
        key = ("currency.digits", code)
        if key not in self._ids:
            (row,) = self._call("model.currency.currency.read", [self._currency(code)], ["digits"])
            self._ids[key] = int(row["digits"])
        return self._ids[key]

    def _invoice_line(self, line: Any, sign: Decimal, places: int) -> dict[str, Any]:
        """Quantity and unit price as billed when Tryton's own rounding of their product gives
        our line amount to the cent; otherwise one unit at the line amount (the amount is what
        the books must hold), the quantity and price kept in the description."""
        quantity, unit_price = line.quantity, line.unit_price
        fits = (
            unit_price == unit_price.quantize(Decimal(1).scaleb(-PRICE_PLACES))
            and _minor(quantity * unit_price, places) == line.amount
        )
        description = line.description
        if not fits:
            description = f"{line.description} ({quantity.normalize()} x {unit_price.normalize()})"
            quantity, unit_price = Decimal(1), line.amount
        return {
            "type": "line",
            "description": description,
            "quantity": sign * quantity,
            "unit_price": unit_price,
            "account": self._account(line.account),
        }

    def _find_invoice_row(self, external_id: str) -> dict[str, Any] | None:
        return self._find_row("account.invoice", INVOICE_FIELDS, external_id)

    def _find_row(self, model: str, fields: list[str], external_id: str) -> dict[str, Any] | None:
        """The document Tryton holds under our external id (unique there), or None."""
        found = self._call(
            f"model.{model}.search_read",
            [("ledgerline_external_id", "=", external_id)],
            0,
            2,
            None,
            fields,
        )
        return found[0] if found else None

    def _invoice_record(
        self, row: dict[str, Any], lines: tuple[ReadBackLine, ...] = ()
    ) -> ErpRecord:
        total = row["total_amount"]
        kind: DocumentKind = "credit_memo" if total < 0 else "invoice"
        sign = -1 if kind == "credit_memo" else 1
        return ErpRecord(
            external_id=row.get("ledgerline_external_id") or row.get("reference") or "",
            kind=kind,
            erp_id=str(row["id"]),
            erp_number=row.get("number") or "",
            state=row["state"],
            posted=row["state"] in ("posted", "paid"),
            currency=(row.get("currency.") or {}).get("code", ""),
            total=sign * total + 0,  # + 0: no negative zero
            tax_total=sign * row["tax_amount"] + 0,
            date=row.get("invoice_date"),
            lines=lines,
        )

    def cancel_invoice(
        self, *, external_id: str, reason: str, credit_external_id: str | None = None
    ) -> ErpRecord:
        """Void the invoice: a draft is cancelled; a posted one is credited in full with a
        refund (Tryton's credit wizard posts the credit note and cancels the invoice, in one
        transaction). ``credit_external_id`` names the credit note (optional). Returns the
        invoice, cancelled; running it again returns it as it is."""
        row = self._find_invoice_row(external_id)
        if row is None:
            raise PermanentError(
                f"Tryton has no invoice with Ledgerline external ID {external_id!r}",
                code="not_found",
            )
        if row["state"] == "cancelled":
            return self._invoice_record(row)
        if row["state"] in ("draft", "validated"):
            self._call("model.account.invoice.cancel", [row["id"]])
        else:
            start: dict[str, Any] = {"with_refund": True, "invoice_date": None}
            if credit_external_id:
                start["ledgerline_external_id"] = credit_external_id
            self._wizard(
                "account.invoice.credit", "account.invoice", row["id"], {"start": start}, "credit"
            )
        (row,) = self._call("model.account.invoice.read", [row["id"]], INVOICE_FIELDS)
        record = self._invoice_record(row)
        if record.state != "cancelled":
            raise TransientError(
                f"Tryton answered the credit of {external_id} but left it in state "
                f"{record.state!r}",
                code="left_uncancelled",
            )
        return record

    # ------------------------------------------------------------------ journals

    def post_journal(self, journal: Journal, *, fresh: bool = False) -> ErpRecord:
        """Two calls for a fresh journal (create; post with the move and its lines read back)."""
        move_id, row = self._find_or_create(
            "account.move",
            lambda: self._find_move_row(journal.external_id),
            lambda: self._move_values(journal),
            fresh=fresh,
        )
        if row is not None and row["state"] == "posted":
            return self._move_of(row)
        if row is not None and row.get("date") is not None and row["date"] != journal.date:
            # a draft left by an earlier attempt, since re-dated by the exception queue (a
            # closed period): move it to the date (and its period) we send now, then post
            self._call(
                "model.account.move.write",
                [move_id],
                {"date": journal.date, "period": self._period(journal.date)},
            )
        row = self._post_and_read("account.move", move_id, MOVE_READ)
        return self._posted(journal.external_id, self._move_of(row))

    def _move_values(self, journal: Journal) -> dict[str, Any]:
        company = self.company()
        if journal.currency.upper() != str(company["currency"]).upper():
            raise PermanentError(
                f"Tryton company {company['name']!r} keeps its books in {company['currency']}; "
                f"journal {journal.external_id} is in {journal.currency}",
                code="currency_mismatch",
            )
        lines = []
        for line in journal.lines:
            values: dict[str, Any] = {
                "account": self._account(line.account),
                "debit": line.debit,
                "credit": line.credit,
            }
            if line.description:
                values["description"] = line.description[:200]
            if line.party is not None:
                values["party"] = self._party(line.party)[0]
            lines.append(values)
        return {
            "company": company["id"],
            "journal": self._journal("journal", "MISC"),
            "period": self._period(journal.date),
            "date": journal.date,
            "description": journal.external_id,
            "ledgerline_external_id": journal.external_id,
            "lines": [["create", lines]],
        }

    def _find_move_row(self, external_id: str) -> dict[str, Any] | None:
        """The move under our external id with its lines, or None."""
        return self._find_row("account.move", MOVE_READ, external_id)

    def _move_of(self, row: dict[str, Any]) -> ErpRecord:
        """A move row read with MOVE_READ (its lines under ``lines.``) as an ErpRecord."""
        return self._move_record(row, self._lines_of(row.get("lines.") or []))

    @staticmethod
    def _lines_of(rows: list[dict[str, Any]]) -> tuple[ReadBackLine, ...]:
        return tuple(
            ReadBackLine(account=r["account."]["code"], debit=r["debit"], credit=r["credit"])
            for r in sorted(rows, key=lambda r: int(r["id"]))
        )

    def _move_record(self, row: dict[str, Any], lines: tuple[ReadBackLine, ...] = ()) -> ErpRecord:
        debit = sum((ln.debit for ln in lines), Decimal(0))
        return ErpRecord(
            external_id=row.get("ledgerline_external_id") or row.get("description") or "",
            kind="journal",
            erp_id=str(row["id"]),
            erp_number=row.get("number") or "",
            state=row["state"],
            posted=row["state"] == "posted",
            currency=str(self.company()["currency"]),
            total=debit,
            tax_total=Decimal(0),
            date=row.get("date"),
            lines=lines,
        )

    def reverse_journal(
        self, *, external_id: str, reversal_external_id: str, date: datetime.date
    ) -> ErpRecord:
        """Tryton's cancel wizard with ``reversal`` (debits and credits swapped, posted, the
        reconcilable lines reconciled), dated ``date``, under ``reversal_external_id``."""
        done = self._find_move_row(reversal_external_id)
        if done is not None:
            if done["state"] != "posted":
                done = self._post_and_read("account.move", int(done["id"]), MOVE_READ)
            return self._posted(reversal_external_id, self._move_of(done))
        row = self._find_move_row(external_id)
        if row is None:
            raise PermanentError(
                f"Tryton has no move with Ledgerline external ID {external_id!r}",
                code="not_found",
            )
        if row["state"] != "posted":
            raise PermanentError(
                f"Tryton holds {external_id} as a draft: there is nothing to reverse",
                code="not_posted",
            )
        self._wizard(
            "account.move.cancel",
            "account.move",
            row["id"],
            {
                "default": {
                    "description": reversal_external_id,
                    "reversal": True,
                    "ledgerline_external_id": reversal_external_id,
                    "ledgerline_date": date,
                }
            },
            "cancel",
        )
        reversal = self._find_move_row(reversal_external_id)
        if reversal is None:
            raise TransientError(
                f"Tryton answered the reversal of {external_id} but holds no move "
                f"{reversal_external_id}",
                code="left_unreversed",
            )
        return self._posted(reversal_external_id, self._move_of(reversal))

    # ------------------------------------------------------------------ reading back

    def find_by_external_id(self, kind: DocumentKind, external_id: str) -> ErpRecord | None:
        """One call: the document with its accounting lines."""
        if kind == "journal":
            row = self._find_move_row(external_id)
            return None if row is None else self._move_of(row)
        row = self._find_row("account.invoice", INVOICE_READ, external_id)
        if row is None:
            return None
        move = row.get("move.") or {}
        return self._invoice_record(row, self._lines_of(move.get("lines.") or []))

    def external_ids(
        self, kind: DocumentKind, *, start: datetime.date, end: datetime.date, prefix: str
    ) -> list[str]:
        return sorted(self._iter_external_ids(kind, start=start, end=end, prefix=prefix))

    def _iter_external_ids(
        self, kind: DocumentKind, *, start: datetime.date, end: datetime.date, prefix: str
    ) -> Iterator[str]:
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        company = ("company", "=", self.company()["id"])
        if kind == "journal":
            rows = self._call(
                "model.account.move.search_read",
                [
                    ("ledgerline_external_id", "like", like),
                    company,
                    ("date", ">=", start),
                    ("date", "<", end),
                ],
                0,
                None,
                None,
                ["ledgerline_external_id"],
            )
            yield from (r["ledgerline_external_id"] for r in rows)
            return
        rows = self._call(
            "model.account.invoice.search_read",
            [
                ("ledgerline_external_id", "like", like),
                company,
                ("type", "=", "out"),
                ("invoice_date", ">=", start),
                ("invoice_date", "<", end),
            ],
            0,
            None,
            None,
            ["ledgerline_external_id", "total_amount"],
        )
        for r in rows:
            if (r["total_amount"] < 0) == (kind == "credit_memo"):
                yield r["ledgerline_external_id"]


class _Warning(Exception):
    def __init__(self, exc: TrytonPermanentError) -> None:
        super().__init__(exc.message)
        self.name = str(exc.extra.get("warning_name", ""))
        self.error = exc


def _extra(exc: TrytonError) -> dict[str, Any]:
    extra: dict[str, Any] = {"method": exc.method, "tryton_type": exc.tryton_type}
    if exc.description:
        extra["description"] = exc.description
    if exc.status is not None:
        extra["http_status"] = exc.status
    return extra
