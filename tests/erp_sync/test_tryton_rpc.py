"""erp_sync.tryton_rpc without a server: Tryton's JSON conventions and how each
kind of answer maps to TrytonTransientError / TrytonPermanentError. The shapes
of the answers are the ones trytond 8.2 sends (see test_tryton_server.py for
the same against the real server)."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal
from typing import Any

import pytest
import requests

from erp_sync.tryton_rpc import (
    TrytonClient,
    TrytonLoginError,
    TrytonPermanentError,
    TrytonTransientError,
    decode,
    encode,
)


class FakeHttp:
    """Stands in for requests.Session: answers each post with the next canned (status, body)."""

    def __init__(self, *answers: tuple[int, Any] | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def post(
        self, url: str, data: str, headers: dict[str, str], timeout: object
    ) -> requests.Response:
        self.sent.append({"url": url, "body": json.loads(data), "headers": headers})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        response = requests.Response()
        response.status_code = status
        response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
        return response


LOGIN_OK = (200, {"id": 1, "result": [7, "token-1", None]})
PREFERENCES = (200, {"id": 2, "result": {"company": 1, "language": "en"}})


def client(*answers: tuple[int, Any] | Exception) -> tuple[TrytonClient, FakeHttp]:
    http = FakeHttp(LOGIN_OK, PREFERENCES, *answers)
    # FakeHttp has only the post() TrytonClient calls; it is no requests.Session
    c = TrytonClient("http://127.0.0.1:1", "ledgerline", "ledgerline", "pw", http=http)  # type: ignore[arg-type]
    c.login()
    return c, http


def test_money_and_dates_travel_as_trytons_classes_and_come_back_exact() -> None:
    sent = encode({"amount": Decimal("1234.56"), "day": datetime.date(2026, 2, 28)})
    assert sent == {
        "amount": {"__class__": "Decimal", "decimal": "1234.56"},
        "day": {"__class__": "date", "year": 2026, "month": 2, "day": 28},
    }
    assert decode(json.dumps(sent)) == {
        "amount": Decimal("1234.56"),
        "day": datetime.date(2026, 2, 28),
    }
    assert decode('{"x": 0.1}') == {"x": Decimal("0.1")}  # a bare JSON fraction is never a float


def test_floats_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match="use Decimal"):
        encode([{"debit": 0.1}])


def test_login_sends_the_password_and_later_calls_carry_session_and_context() -> None:
    c, http = client((200, {"id": 3, "result": [42]}))

    assert c.call("model.account.move.search", [("description", "=", "X")], 0, None, None) == [42]

    assert http.sent[0]["body"]["method"] == "common.db.login"
    assert http.sent[0]["body"]["params"] == ["ledgerline", {"password": "pw"}, "en"]
    call = http.sent[2]
    assert call["url"] == "http://127.0.0.1:1/ledgerline/rpc/"
    assert (
        call["headers"]["Authorization"] == "Session bGVkZ2VybGluZTo3OnRva2VuLTE="
    )  # ledgerline:7:token-1
    assert call["body"]["params"][-1] == {"company": 1, "language": "en"}


def test_user_error_is_permanent_with_trytons_message() -> None:
    c, _ = client(
        (
            200,
            {
                "id": 3,
                "error": ["UserError", ['To post move "(2)", you must balance.', "why", None]],
            },
        )
    )
    with pytest.raises(TrytonPermanentError) as err:
        c.call("model.account.move.post", [2])
    assert (err.value.message, err.value.description, err.value.tryton_type) == (
        'To post move "(2)", you must balance.',
        "why",
        "UserError",
    )


def test_user_warning_is_permanent_and_names_the_warning() -> None:
    c, _ = client((200, {"id": 3, "error": ["UserWarning", ["w_key", "Are you sure?", ""]]}))
    with pytest.raises(TrytonPermanentError) as err:
        c.call("model.account.move.post", [2])
    assert err.value.message == "Are you sure?"
    assert err.value.extra["warning_name"] == "w_key"


@pytest.mark.parametrize(
    "answer, expected",
    [
        (
            (200, {"id": 3, "error": ["ConcurrencyException", "Record modified"]}),
            TrytonTransientError,
        ),
        (
            (
                200,
                {
                    "id": 3,
                    "error": [
                        "database is locked",
                        "Traceback ... OperationalError: database is locked",
                    ],
                },
            ),
            TrytonTransientError,
        ),
        (
            (200, {"id": 3, "error": ["'NoneType' object has no attribute 'id'", "Traceback ..."]}),
            TrytonPermanentError,
        ),
        ((500, "Internal Server Error"), TrytonTransientError),
        ((503, "Service Unavailable"), TrytonTransientError),
        ((504, "Gateway Timeout"), TrytonTransientError),
        ((429, "Too Many Requests"), TrytonTransientError),
        ((403, "Forbidden"), TrytonPermanentError),
        ((400, "Bad Request"), TrytonPermanentError),
        ((200, "<html>proxy error</html>"), TrytonTransientError),
        (requests.ConnectionError("refused"), TrytonTransientError),
        (requests.ReadTimeout("slow"), TrytonTransientError),
    ],
)
def test_each_failure_maps_to_transient_or_permanent(
    answer: tuple[int, Any] | Exception, expected: type[Exception]
) -> None:
    c, _ = client(answer)
    with pytest.raises(expected):
        c.call("model.account.move.create", [{}])


def test_an_expired_session_is_renewed_once_then_the_refusal_stands() -> None:
    c, http = client((401, "Unauthorized"), LOGIN_OK, PREFERENCES, (401, "Unauthorized"))
    with pytest.raises(TrytonLoginError, match="refused the session"):
        c.call("model.account.move.post", [2])
    assert [s["body"]["method"] for s in http.sent[2:]] == [
        "model.account.move.post",
        "common.db.login",
        "model.res.user.get_preferences",
        "model.account.move.post",
    ]
