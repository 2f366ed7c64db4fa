"""The real Tryton server Ledgerline's connector will talk to, through
erp_sync.tryton_rpc: what it accepts, what it refuses, and how each refusal
reaches us (transient: try later; permanent: Tryton's own message)."""

from __future__ import annotations

import datetime
import socket
import uuid
from decimal import Decimal

import pytest

from erp_sync.tryton_rpc import (
    TrytonClient,
    TrytonLoginError,
    TrytonPermanentError,
    TrytonTransientError,
)

from .conftest import API_LOGIN, TrytonServer, free_port

pytestmark = pytest.mark.tryton

MOVE_FIELDS = ["number", "state", "date", "period", "journal", "description", "lines"]
LINE_FIELDS = ["account", "party", "debit", "credit", "description", "state"]


def reference() -> str:
    return f"LL-JE-{uuid.uuid4().hex[:12]}"


def new_party(api: TrytonClient, name: str) -> int:
    (party,) = api.call("model.party.party.create", [{"name": name}])
    return int(party)


def period_of(api: TrytonClient, day: datetime.date) -> int:
    (period,) = api.call(
        "model.account.period.search",
        [
            ("company", "=", api.context["company"]),
            ("type", "=", "standard"),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
        ],
        0,
        None,
        None,
    )
    return int(period)


def move_values(
    journal: int, period: int, day: datetime.date, ref: str, lines: list[dict[str, object]]
) -> dict[str, object]:
    return {
        "journal": journal,
        "period": period,
        "date": day,
        "description": ref,
        "lines": [["create", lines]],
    }


def test_login_opens_a_session_in_the_prepared_company(api: TrytonClient) -> None:
    assert api.session is not None and api.session.user_id > 0
    company_id = api.context["company"]
    (company,) = api.call("model.company.company.read", [company_id], ["rec_name", "currency"])
    (currency,) = api.call("model.currency.currency.read", [company["currency"]], ["code"])
    assert company["rec_name"] == "Ledgerline Inc."
    assert currency["code"] == "USD"


def test_fiscal_years_cover_this_year_and_next_in_monthly_periods(api: TrytonClient) -> None:
    year = datetime.date.today().year
    for y in (year, year + 1):
        periods = api.call(
            "model.account.period.search_read",
            [
                ("company", "=", api.context["company"]),
                ("type", "=", "standard"),
                ("fiscalyear.start_date", "=", datetime.date(y, 1, 1)),
            ],
            0,
            None,
            [("start_date", "ASC")],
            ["name", "start_date", "end_date", "state"],
        )
        assert [p["start_date"] for p in periods] == [datetime.date(y, m, 1) for m in range(1, 13)]
        assert periods[-1]["end_date"] == datetime.date(y, 12, 31)


def test_balanced_move_is_posted_and_read_back_by_its_reference(
    api: TrytonClient, accounts: dict[str, int], misc_journal: int
) -> None:
    today = datetime.date.today()
    ref = reference()
    party = new_party(api, "Acme Corp")
    (move_id,) = api.call(
        "model.account.move.create",
        [
            move_values(
                misc_journal,
                period_of(api, today),
                today,
                ref,
                [
                    {
                        "account": accounts["receivable"],
                        "party": party,
                        "debit": Decimal("1234.56"),
                        "credit": Decimal("0"),
                        "description": "INV-1 receivable",
                    },
                    {
                        "account": accounts["revenue"],
                        "debit": Decimal("0"),
                        "credit": Decimal("1234.56"),
                        "description": "INV-1 revenue",
                    },
                ],
            )
        ],
    )
    api.call("model.account.move.post", [move_id])

    (move,) = api.call(
        "model.account.move.search_read", [("description", "=", ref)], 0, None, None, MOVE_FIELDS
    )
    assert move["id"] == move_id
    assert move["state"] == "posted"
    assert move["number"]  # Tryton numbers a move when it posts it
    assert move["date"] == today
    lines = api.call(
        "model.account.move.line.search_read",
        [("move", "=", move_id)],
        0,
        None,
        [("debit", "DESC")],
        LINE_FIELDS,
    )
    assert [(ln["account"], ln["party"], ln["debit"], ln["credit"]) for ln in lines] == [
        (accounts["receivable"], party, Decimal("1234.56"), Decimal("0")),
        (accounts["revenue"], None, Decimal("0"), Decimal("1234.56")),
    ]


def test_unbalanced_move_is_refused_with_trytons_message(
    api: TrytonClient, accounts: dict[str, int], misc_journal: int
) -> None:
    today = datetime.date.today()
    ref = reference()
    (move_id,) = api.call(
        "model.account.move.create",
        [
            move_values(
                misc_journal,
                period_of(api, today),
                today,
                ref,
                [
                    {
                        "account": accounts["cash"],
                        "debit": Decimal("100.00"),
                        "credit": Decimal("0"),
                    },
                    {
                        "account": accounts["revenue"],
                        "debit": Decimal("0"),
                        "credit": Decimal("100.01"),
                    },
                ],
            )
        ],
    )

    with pytest.raises(TrytonPermanentError) as refused:
        api.call("model.account.move.post", [move_id])

    assert refused.value.tryton_type == "UserError"
    assert refused.value.message == (
        f'To post move "({move_id})", you must balance all its lines debits and credits.'
    )
    (move,) = api.call("model.account.move.read", [move_id], ["state", "number"])
    assert (move["state"], move["number"]) == ("draft", None)


def test_move_in_a_closed_period_is_refused(
    admin: TrytonClient, api: TrytonClient, accounts: dict[str, int], misc_journal: int
) -> None:
    day = datetime.date(datetime.date.today().year + 1, 6, 15)  # a month no other test posts to
    period = period_of(admin, day)
    admin.call("model.account.period.close", [period])
    (state,) = admin.call("model.account.period.read", [period], ["state", "name"])
    assert state["state"] == "closed"
    ref = reference()

    with pytest.raises(TrytonPermanentError) as refused:
        api.call(
            "model.account.move.create",
            [
                move_values(
                    misc_journal,
                    period,
                    day,
                    ref,
                    [
                        {
                            "account": accounts["cash"],
                            "debit": Decimal("5.00"),
                            "credit": Decimal("0"),
                        },
                        {
                            "account": accounts["revenue"],
                            "debit": Decimal("0"),
                            "credit": Decimal("5.00"),
                        },
                    ],
                )
            ],
        )

    assert refused.value.tryton_type == "UserError"
    assert refused.value.message == (
        f'You cannot create a journal-period in closed period "{state["name"]}".'
    )
    assert api.call("model.account.move.search", [("description", "=", ref)], 0, None, None) == []


def test_the_api_user_cannot_close_periods(api: TrytonClient) -> None:
    period = period_of(api, datetime.date(datetime.date.today().year + 1, 7, 15))
    with pytest.raises(TrytonPermanentError) as refused:
        api.call("model.account.period.close", [period])
    assert refused.value.message == 'You are not allowed to access "Account Period".'


def test_customer_invoice_is_posted_with_its_move(api: TrytonClient) -> None:
    """The call shapes the connector's post_invoice will use (no on_change runs over RPC,
    so account, journal and invoice address are given explicitly). In the German company:
    Tryton numbers invoices in date order, and other tests post the US company's invoices
    on dates of their own."""
    (company,) = api.call(
        "model.company.company.search", [("party.name", "=", "Ledgerline GmbH")], 0, None, None
    )
    accounts = {}
    for role, code in (("receivable", "1.2.1"), ("revenue", "4.2.2")):
        (accounts[role],) = api.call(
            "model.account.account.search",
            [("code", "=", code), ("company", "=", company)],
            0,
            None,
            None,
        )
    (party,) = api.call(
        "model.party.party.create",
        [
            {
                "name": "Globex",
                "addresses": [["create", [{"street": "1 Main St", "city": "Springfield"}]]],
            }
        ],
    )
    (address,) = api.call("model.party.address.search", [("party", "=", party)], 0, None, None)
    (journal,) = api.call("model.account.journal.search", [("code", "=", "REV")], 0, None, None)
    ref = f"LL-INV-{uuid.uuid4().hex[:8]}"
    (invoice_id,) = api.call(
        "model.account.invoice.create",
        [
            {
                "company": company,
                "type": "out",
                "party": party,
                "invoice_address": address,
                "account": accounts["receivable"],
                "journal": journal,
                "invoice_date": datetime.date.today(),
                "reference": ref,
                "lines": [
                    [
                        "create",
                        [
                            {
                                "type": "line",
                                "description": "API calls",
                                "quantity": Decimal("1000"),
                                "unit_price": Decimal("0.0125"),
                                "account": accounts["revenue"],
                            },
                            {
                                "type": "line",
                                "description": "Platform fee",
                                "quantity": Decimal("1"),
                                "unit_price": Decimal("99.00"),
                                "account": accounts["revenue"],
                            },
                        ],
                    ]
                ],
            }
        ],
        context={"company": company},  # the lines' accounts are checked against it
    )
    api.call("model.account.invoice.post", [invoice_id], context={"company": company})

    (invoice,) = api.call(
        "model.account.invoice.search_read",
        [("reference", "=", ref)],
        0,
        None,
        None,
        ["state", "number", "total_amount", "move"],
    )
    assert invoice["state"] == "posted" and invoice["number"]
    assert invoice["total_amount"] == Decimal("111.50")  # 1000 x 0.0125 + 99.00
    (move,) = api.call("model.account.move.read", [invoice["move"]], ["state"])
    assert move["state"] == "posted"


def test_wrong_password_is_a_clear_login_error(tryton_server: TrytonServer) -> None:
    client = tryton_server.client(API_LOGIN, "not-the-password")
    with pytest.raises(TrytonLoginError) as refused:
        client.login()
    assert isinstance(refused.value, TrytonPermanentError)
    assert refused.value.status == 401
    assert str(refused.value).startswith(
        f"Tryton refused the login of {API_LOGIN!r} on database {tryton_server.database!r}: "
        "wrong login or password"
    )


def test_unknown_database_is_a_login_error(tryton_server: TrytonServer) -> None:
    client = TrytonClient(tryton_server.url, "no_such_db", API_LOGIN, "whatever")
    with pytest.raises(TrytonLoginError, match="no database 'no_such_db'"):
        client.login()


def test_an_expired_session_is_renewed_once(tryton_server: TrytonServer) -> None:
    client = tryton_server.client()
    first = client.login()
    client._post("common.db.logout", [], authenticated=True)  # the server forgets the session

    assert client.call("model.res.user.search", [("login", "=", API_LOGIN)], 0, None, None)
    assert client.session is not None and client.session.token != first.token


def test_server_down_is_transient(tryton_server: TrytonServer) -> None:
    client = TrytonClient(f"http://127.0.0.1:{free_port()}", "ledgerline", API_LOGIN, "x")
    with pytest.raises(TrytonTransientError, match="cannot reach Tryton"):
        client.login()


def test_server_that_does_not_answer_is_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection, never answers
        port = listener.getsockname()[1]
        client = TrytonClient(
            f"http://127.0.0.1:{port}", "ledgerline", API_LOGIN, "x", timeout=(1.0, 0.5)
        )
        with pytest.raises(TrytonTransientError, match="did not answer in time"):
            client.login()
