"""A small JSON-RPC client for a Tryton (trytond 8.2) server.

The Tryton connector builds on this; it knows nothing of Ledgerline's models.

Protocol (as trytond 8.2 speaks it):
- POST ``<base_url>/<database>/rpc/`` with ``{"id", "method", "params"}``.
- ``common.db.login`` with params ``[login, {"password": ...}, language]``
  answers ``[user_id, session, bus_url]``; later requests carry
  ``Authorization: Session base64("<login>:<user_id>:<session>")``.
- ``model.<model>.<method>``, ``wizard.…`` and ``report.…`` calls take the
  context as their LAST positional parameter; :meth:`TrytonClient.call`
  appends the session's context (``res.user.get_preferences``) itself.
- Decimals, dates and datetimes travel as ``{"__class__": "Decimal",
  "decimal": "12.34"}``, ``{"__class__": "date", "year", "month", "day"}``
  and so on; this client encodes and decodes them, so money stays Decimal.
- Errors come back with HTTP 200 and ``"error"``: ``["UserError",
  [message, description, domain]]`` for Tryton's validation and business
  errors (unbalanced move, closed period, access), ``["UserWarning", [name,
  message, description]]``, ``["ConcurrencyException", message]``, or
  ``[str(exception), traceback]`` for anything else. HTTP statuses: 401 bad
  login or expired session, 403 method not exposed, 404 unknown database,
  429 too many login attempts, 5xx/504 server trouble or RPC timeout.

Two exception classes say what the caller may do:
- :class:`TrytonTransientError`: try again later (connection refused, time-outs,
  HTTP 5xx/429, a locked SQLite database, a concurrent update). A time-out on
  a write may mean the write happened: look the document up by its reference
  before posting it again.
- :class:`TrytonPermanentError`: the same request will fail again (Tryton's
  UserError/UserWarning, bad credentials, unknown database or method, a server
  exception caused by the payload). ``message`` is Tryton's own text.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

__all__ = [
    "TrytonClient",
    "TrytonError",
    "TrytonLoginError",
    "TrytonPermanentError",
    "TrytonTransientError",
    "decode",
    "encode",
]

DEFAULT_TIMEOUT = (5.0, 60.0)  # connect, read (trytond's own request timeout is 60 s)
CONTEXT_METHOD_PREFIXES = ("model.", "wizard.", "report.")


class TrytonError(Exception):
    """Base of both; ``message`` is Tryton's text (or ours when Tryton gave none)."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        tryton_type: str = "",
        description: str = "",
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.tryton_type = tryton_type
        self.description = description
        self.status = status
        self.extra = extra or {}

    def __str__(self) -> str:
        text = self.message
        if self.description:
            text = f"{text} ({self.description})"
        return f"{text} [{self.method}]" if self.method else text


class TrytonTransientError(TrytonError):
    """The ERP could not answer now; the same request may succeed later."""


class TrytonPermanentError(TrytonError):
    """The ERP refused the request; sending it again will not help."""


class TrytonLoginError(TrytonPermanentError):
    """Wrong login or password (or the database does not exist)."""


# --- Tryton's JSON conventions ---------------------------------------------------


def encode(value: Any) -> Any:
    """Python values to Tryton's JSON: Decimal/date/datetime/time/timedelta/bytes as __class__ objects."""
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, datetime.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, datetime.time):
        return {
            "__class__": "time",
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, datetime.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, bytes | bytearray):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):
        raise TypeError("floats are not sent to the ERP: use Decimal for amounts and quantities")
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(v) for v in value]
    return value


def _object_hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "date":
        return datetime.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return datetime.datetime(
            obj["year"],
            obj["month"],
            obj["day"],
            obj["hour"],
            obj["minute"],
            obj["second"],
            obj["microsecond"],
        )
    if kind == "time":
        return datetime.time(obj["hour"], obj["minute"], obj["second"], obj["microsecond"])
    if kind == "timedelta":
        return datetime.timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def decode(text: str) -> Any:
    """Tryton's JSON to Python values; JSON numbers with a fraction become Decimal, never float."""
    return json.loads(text, object_hook=_object_hook, parse_float=Decimal)


# --- the client -------------------------------------------------------------------


@dataclass(frozen=True)
class TrytonSession:
    login: str
    user_id: int
    token: str

    def header(self) -> str:
        raw = f"{self.login}:{self.user_id}:{self.token}".encode()
        return "Session " + base64.b64encode(raw).decode("ascii")


class TrytonClient:
    """One database on one trytond server, one user.

    >>> client = TrytonClient("http://127.0.0.1:8010", "ledgerline", "ledgerline", "secret")
    >>> client.login()
    >>> client.call("model.account.move.search_read", [("number", "=", "1")], 0, None, None, ["state"])
    """

    def __init__(
        self,
        base_url: str,
        database: str,
        login: str,
        password: str,
        *,
        language: str = "en",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        http: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self.url = f"{self.base_url}/{database}/rpc/"
        self.login_name = login
        self._password = password
        self.language = language
        self.timeout = timeout
        self.http = http or requests.Session()
        self.session: TrytonSession | None = None
        self.context: dict[str, Any] = {}
        self._ids = 0
        self._lock = threading.Lock()

    # -- session --

    def login(self) -> TrytonSession:
        """Open a session and load the user's context (company, language, …)."""
        result = self._post(
            "common.db.login",
            [self.login_name, {"password": self._password}, self.language],
            authenticated=False,
        )
        user_id, token = result[0], result[1]
        self.session = TrytonSession(self.login_name, int(user_id), str(token))
        self.context = dict(
            self._post("model.res.user.get_preferences", [True, {}], authenticated=True)
        )
        return self.session

    def logout(self) -> None:
        if self.session is None:
            return
        try:
            self._post("common.db.logout", [], authenticated=True)
        finally:
            self.session = None

    # -- calls --

    def call(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """Call ``method`` with ``params``. Model, wizard and report methods get
        the session context (merged with ``context``) appended as Tryton requires.
        Logs in first when there is no session, and once more if it expired."""
        args = list(params)
        if method.startswith(CONTEXT_METHOD_PREFIXES):
            args.append({**self.context, **(context or {})})
        if self.session is None:
            self.login()
        try:
            return self._post(method, args, authenticated=True)
        except TrytonLoginError as exc:
            if exc.status != 401 or exc.extra.get("during") != "call":
                raise
            # sessions expire (trytond [session] max_age); nothing ran, so log in and try once more
            self.login()
            return self._post(method, args, authenticated=True)

    # -- transport and error mapping --

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _post(self, method: str, params: list[Any], *, authenticated: bool) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if authenticated:
            if self.session is None:
                raise TrytonPermanentError("not logged in", method=method)
            headers["Authorization"] = self.session.header()
        body = json.dumps({"id": self._next_id(), "method": method, "params": encode(params)})
        try:
            response = self.http.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise TrytonTransientError(
                f"Tryton at {self.base_url} did not answer in time: {exc}", method=method
            ) from exc
        except requests.ConnectionError as exc:
            raise TrytonTransientError(
                f"cannot reach Tryton at {self.base_url}: {exc}", method=method
            ) from exc
        except requests.RequestException as exc:
            raise TrytonTransientError(f"request to Tryton failed: {exc}", method=method) from exc
        return self._result(method, response, authenticated=authenticated)

    def _result(self, method: str, response: requests.Response, *, authenticated: bool) -> Any:
        status = response.status_code
        if status != 200:
            self._raise_for_status(method, status, response.text)
        try:
            payload = decode(response.text)
        except ValueError as exc:
            raise TrytonTransientError(
                f"Tryton answered with something that is not JSON: {response.text[:200]!r}",
                method=method,
                status=status,
            ) from exc
        if not isinstance(payload, dict):
            raise TrytonTransientError(
                f"unexpected JSON-RPC answer: {payload!r:.200}", method=method, status=status
            )
        if payload.get("error") is not None:
            raise _error_from_payload(method, payload["error"])
        return payload.get("result")

    def _raise_for_status(self, method: str, status: int, text: str) -> None:
        detail = text.strip()[:300]
        if status == 401:
            if method == "common.db.login":
                raise TrytonLoginError(
                    f"Tryton refused the login of {self.login_name!r} on database "
                    f"{self.database!r}: wrong login or password",
                    method=method,
                    status=status,
                    extra={"during": "login"},
                )
            raise TrytonLoginError(
                "Tryton refused the session (expired or logged out)",
                method=method,
                status=status,
                extra={"during": "call"},
            )
        if status == 404 and method == "common.db.login":
            raise TrytonLoginError(
                f"Tryton has no database {self.database!r} at {self.base_url}",
                method=method,
                status=status,
                extra={"during": "login"},
            )
        if status == 429:
            raise TrytonTransientError(
                "Tryton refused: too many login attempts, try again later",
                method=method,
                status=status,
            )
        if status >= 500:
            raise TrytonTransientError(
                f"Tryton server error HTTP {status}",
                method=method,
                status=status,
                extra={"body": detail},
            )
        if status == 403:
            raise TrytonPermanentError(
                f"Tryton does not allow {method!r} (HTTP 403)", method=method, status=status
            )
        raise TrytonPermanentError(
            f"Tryton answered HTTP {status}: {detail}", method=method, status=status
        )


def _error_from_payload(method: str, error: Any) -> TrytonError:
    """Map the "error" member of a JSON-RPC answer to one of the two classes."""
    if isinstance(error, list) and len(error) == 2 and isinstance(error[0], str):
        kind, args = error
        if kind == "UserError" and isinstance(args, list):
            message, description = _text(args, 0), _text(args, 1)
            return TrytonPermanentError(
                message,
                method=method,
                tryton_type=kind,
                description=description,
                extra={"domain": args[2] if len(args) > 2 else None},
            )
        if kind == "UserWarning" and isinstance(args, list):
            return TrytonPermanentError(
                _text(args, 1),
                method=method,
                tryton_type=kind,
                description=_text(args, 2),
                extra={"warning_name": _text(args, 0)},
            )
        if kind == "LoginException" and isinstance(args, list):
            return TrytonLoginError(
                _text(args, 1) or "Tryton asks for more login parameters",
                method=method,
                tryton_type=kind,
                extra={"during": "login", "parameter": _text(args, 0)},
            )
        if kind == "ConcurrencyException":
            return TrytonTransientError(str(args), method=method, tryton_type=kind)
        # any other server exception: [str(exception), traceback]
        traceback = args if isinstance(args, str) else ""
        if _is_transient_database_error(kind, traceback):
            return TrytonTransientError(
                kind,
                method=method,
                tryton_type="DatabaseOperationalError",
                extra={"traceback": traceback},
            )
        return TrytonPermanentError(
            kind, method=method, tryton_type="ServerException", extra={"traceback": traceback}
        )
    return TrytonPermanentError(f"unexpected Tryton error: {error!r:.300}", method=method)


def _text(args: list[Any], index: int) -> str:
    return str(args[index]) if len(args) > index and args[index] is not None else ""


def _is_transient_database_error(message: str, traceback: str) -> bool:
    lowered = f"{message}\n{traceback[-2000:]}".lower()
    return "database is locked" in lowered or "operationalerror" in lowered and "lock" in lowered
