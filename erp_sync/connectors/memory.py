"""An ERP in memory, behind the same interface: the outbox's state machine is tested on it, and a
connection of kind `memory` is a dry run (documents are kept in the process, nothing leaves it).

One `MemoryErp` per `ConnectionConfig.database` name (shared by every connector instance of the
process, guarded by a lock). Faults are scripted with `fail_next`: a transient error before the
document is applied, an unknown outcome AFTER it was applied (what a reset after the ERP's
commit looks like), or a permanent error with the ERP's message. `closed_before` closes every
period before a date, as finance closes one in an ERP.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from erp_sync.connectors.base import (
    Connector,
    Document,
    DocumentKind,
    ErpRecord,
    Exchange,
    Journal,
    Party,
    PermanentError,
    ReadBackLine,
    TransientError,
    UnknownOutcome,
)

FaultKind = Literal["transient", "unknown_after_apply", "permanent"]


@dataclass
class Fault:
    kind: FaultKind
    message: str
    methods: tuple[str, ...] = ()  # empty: any write


class MemoryErp:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.records: dict[tuple[str, str], ErpRecord] = {}
        self.parties: dict[str, str] = {}
        self.creates: Counter[str] = Counter()  # external id -> documents created
        self.calls: list[str] = []
        self.faults: list[Fault] = []
        self.closed_before: datetime.date | None = None
        self.unknown_accounts: set[str] = set()
        self.delay_seconds = 0.0
        self.in_progress: Counter[str] = Counter()
        self.max_concurrent_same: int = 0
        self._ids = itertools.count(1)

    def fail_next(
        self, kind: FaultKind, message: str = "", *, count: int = 1, methods: tuple[str, ...] = ()
    ) -> None:
        with self.lock:
            for _ in range(count):
                self.faults.append(Fault(kind, message or f"scripted {kind}", methods))

    def reset(self) -> None:
        # re-running __init__ resets every field in one place; mypy forbids calling it on an instance
        self.__init__(self.name)  # type: ignore[misc]

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if not fault.methods or method in fault.methods:
                    return self.faults.pop(i)
        return None


_ERPS: dict[str, MemoryErp] = {}
_ERPS_LOCK = threading.Lock()


def memory_erp(name: str = "default") -> MemoryErp:
    with _ERPS_LOCK:
        if name not in _ERPS:
            _ERPS[name] = MemoryErp(name)
        return _ERPS[name]


class MemoryConnector(Connector):
    kind = "memory"

    @property
    def erp(self) -> MemoryErp:
        return memory_erp(self.config.database or "default")

    # -- plumbing --

    def _exchange(
        self, method: str, request: Any, apply: Callable[[], Any], *, write: bool = True
    ) -> Any:
        erp = self.erp
        started = time.perf_counter()
        fault = erp._take_fault(method) if write else None
        key = str(request.get("external_id", "")) if isinstance(request, dict) else ""
        try:
            if fault is not None and fault.kind == "transient":
                raise TransientError(fault.message, code="scripted")
            if fault is not None and fault.kind == "permanent":
                raise PermanentError(fault.message, code="scripted")
            with erp.lock:
                erp.calls.append(method)
                if key:
                    erp.in_progress[key] += 1
                    erp.max_concurrent_same = max(erp.max_concurrent_same, erp.in_progress[key])
            try:
                if erp.delay_seconds:
                    time.sleep(erp.delay_seconds)
                with erp.lock:
                    result = apply()
            finally:
                if key:
                    with erp.lock:
                        erp.in_progress[key] -= 1
            if fault is not None and fault.kind == "unknown_after_apply":
                raise UnknownOutcome(fault.message, code="scripted")
        except (TransientError, PermanentError) as exc:
            error_class = (
                "unknown_outcome"
                if isinstance(exc, UnknownOutcome)
                else ("transient" if exc.transient else "permanent")
            )
            self.recorder(
                Exchange(
                    method=method,
                    request=request,
                    response={"error": exc.message},
                    http_status=None,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    error_class=error_class,
                )
            )
            raise
        self.recorder(
            Exchange(
                method=method,
                request=request,
                response=_jsonable(result),
                http_status=200,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        )
        return result

    def _check_date(self, date: datetime.date) -> None:
        closed = self.erp.closed_before
        if closed is not None and date < closed:
            raise PermanentError(f'The period of "{date}" is closed.', code="closed_period")

    def _check_accounts(self, accounts: list[str]) -> None:
        for account in accounts:
            if account in self.erp.unknown_accounts:
                raise PermanentError(f'Unknown account "{account}".', code="unknown_account")

    def _store(self, record: ErpRecord) -> ErpRecord:
        erp = self.erp
        erp.records[(record.kind, record.external_id)] = record
        erp.creates[record.external_id] += 1
        return record

    # -- the interface --

    def ensure_party(self, party: Party) -> str:
        def apply() -> str:
            if party.erp_party_id:
                return party.erp_party_id
            if party.code not in self.erp.parties:
                self.erp.parties[party.code] = f"P{next(self.erp._ids)}"
            return self.erp.parties[party.code]

        result: str = self._exchange("party.ensure", {"code": party.code}, apply)
        return result

    def _post_document(
        self, document: Document, kind: Literal["invoice", "credit_memo"]
    ) -> ErpRecord:
        request = {"external_id": document.external_id, "total": str(document.total)}

        def apply() -> ErpRecord:
            existing = self.erp.records.get((kind, document.external_id))
            if existing is not None:
                return existing
            self._check_date(document.issue_date)
            self._check_accounts(
                [document.receivable_account]
                + [ln.account for ln in document.lines]
                + [t.account for t in document.taxes]
            )
            sign = Decimal(-1) if kind == "credit_memo" else Decimal(1)
            signed = [(document.receivable_account, document.total * sign)]
            signed += [(ln.account, -ln.amount * sign) for ln in document.lines]
            signed += [(t.account, -t.amount * sign) for t in document.taxes]
            lines = [ReadBackLine(a, max(v, Decimal(0)), max(-v, Decimal(0))) for a, v in signed]
            return self._store(
                ErpRecord(
                    external_id=document.external_id,
                    kind=kind,
                    erp_id=str(next(self.erp._ids)),
                    erp_number=f"M-{document.number}",
                    state="posted",
                    posted=True,
                    currency=document.currency,
                    total=document.total,
                    tax_total=document.tax_total,
                    date=document.issue_date,
                    lines=tuple(lines),
                )
            )

        result: ErpRecord = self._exchange(f"{kind}.post", request, apply)
        return result

    # ``fresh`` changes nothing here: every write looks the external id up first, in memory

    def post_invoice(self, document: Document, *, fresh: bool = False) -> ErpRecord:
        return self._post_document(document, "invoice")

    def post_credit_memo(self, document: Document, *, fresh: bool = False) -> ErpRecord:
        return self._post_document(document, "credit_memo")

    def post_journal(self, journal: Journal, *, fresh: bool = False) -> ErpRecord:
        request = {"external_id": journal.external_id, "lines": len(journal.lines)}

        def apply() -> ErpRecord:
            existing = self.erp.records.get(("journal", journal.external_id))
            if existing is not None:
                return existing
            self._check_date(journal.date)
            self._check_accounts([ln.account for ln in journal.lines])
            debit = sum((ln.debit for ln in journal.lines), Decimal(0))
            credit = sum((ln.credit for ln in journal.lines), Decimal(0))
            if debit != credit:
                raise PermanentError("The move is not balanced.", code="unbalanced")
            return self._store(
                ErpRecord(
                    external_id=journal.external_id,
                    kind="journal",
                    erp_id=str(next(self.erp._ids)),
                    erp_number=f"MV-{journal.external_id}",
                    state="posted",
                    posted=True,
                    currency=journal.currency,
                    total=debit,
                    tax_total=Decimal(0),
                    date=journal.date,
                    lines=tuple(
                        ReadBackLine(ln.account, ln.debit, ln.credit) for ln in journal.lines
                    ),
                )
            )

        result: ErpRecord = self._exchange("journal.post", request, apply)
        return result

    def cancel_invoice(
        self, *, external_id: str, reason: str, credit_external_id: str | None = None
    ) -> ErpRecord:
        def apply() -> ErpRecord:
            existing = self.erp.records.get(("invoice", external_id))
            if existing is None:
                raise PermanentError(f"No invoice with reference {external_id}.", code="not_found")
            if existing.state != "cancelled":
                existing = replace(existing, state="cancelled")
                self.erp.records[("invoice", external_id)] = existing
            return existing

        result: ErpRecord = self._exchange(
            "invoice.cancel", {"external_id": external_id, "reason": reason}, apply
        )
        return result

    def reverse_journal(
        self, *, external_id: str, reversal_external_id: str, date: datetime.date
    ) -> ErpRecord:
        def apply() -> ErpRecord:
            existing = self.erp.records.get(("journal", reversal_external_id))
            if existing is not None:
                return existing
            original = self.erp.records.get(("journal", external_id))
            if original is None:
                raise PermanentError(f"No move with reference {external_id}.", code="not_found")
            self._check_date(date)
            return self._store(
                replace(
                    original,
                    external_id=reversal_external_id,
                    erp_id=str(next(self.erp._ids)),
                    date=date,
                    lines=tuple(
                        ReadBackLine(ln.account, ln.credit, ln.debit) for ln in original.lines
                    ),
                )
            )

        result: ErpRecord = self._exchange(
            "journal.reverse", {"external_id": reversal_external_id}, apply
        )
        return result

    def find_by_external_id(self, kind: DocumentKind, external_id: str) -> ErpRecord | None:
        result: ErpRecord | None = self._exchange(
            "find",
            {"kind": kind, "external_id": external_id},
            lambda: self.erp.records.get((kind, external_id)),
            write=False,
        )
        return result

    def external_ids(
        self, kind: DocumentKind, *, start: datetime.date, end: datetime.date, prefix: str
    ) -> list[str]:
        def apply() -> list[str]:
            return sorted(
                r.external_id
                for (k, _), r in self.erp.records.items()
                if k == kind
                and r.external_id.startswith(prefix)
                and r.date is not None
                and start <= r.date < end
            )

        result: list[str] = self._exchange(
            "external_ids", {"kind": kind, "prefix": prefix}, apply, write=False
        )
        return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, ErpRecord):
        return {
            "external_id": value.external_id,
            "erp_id": value.erp_id,
            "state": value.state,
            "total": str(value.total),
        }
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
