"""The Tryton connector against the real Tryton server (PostgreSQL when the tests run on it):
every connector method, idempotency read from Tryton itself, Tryton's refusals in Tryton's
words, the wizards, the warnings and an expired session.

They book in the German company (EUR): Tryton numbers invoices from a strict sequence in date
order, and the pipeline tests sharing this session's server post the US company's invoices on
their own (fixed) dates."""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import pytest
import requests
from urllib3.exceptions import ProtocolError

from erp_sync.connectors.base import (
    ConnectionConfig,
    Document,
    DocumentLine,
    DocumentTax,
    Exchange,
    Journal,
    JournalLine,
    Party,
    PermanentError,
    TransientError,
    UnknownOutcome,
)
from erp_sync.connectors.tryton import TrytonConnector
from erp_sync.tryton_rpc import TrytonClient, TrytonPermanentError

from .conftest import API_LOGIN, API_PASSWORD, TrytonServer

pytestmark = pytest.mark.tryton

US, DE, JP = "Ledgerline Inc.", "Ledgerline GmbH", "Ledgerline K.K."
TODAY = datetime.date.today()
D = Decimal


def uid() -> str:
    return uuid.uuid4().hex[:10]


class Faulty(requests.Session):
    """A requests session that loses answers on purpose: ``lose`` (method -> count) sends the
    request and then raises a connection reset, as if the answer never came back (Tryton has
    committed); ``refuse`` raises before anything is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.lose: dict[str, int] = {}
        self.refuse: dict[str, int] = {}

    # narrower than Session.post on purpose: TrytonClient only ever posts (url, data, **kwargs)
    def post(self, url: str, data: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method = json.loads(data)["method"]
        if self.refuse.get(method):
            self.refuse[method] -= 1
            raise requests.ConnectTimeout("connect timed out (test)")
        response = super().post(url, data=data, **kwargs)
        if self.lose.get(method):
            self.lose[method] -= 1
            raise requests.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError(104, "reset (test)"))
            )
        return response


Make = Callable[..., tuple[TrytonConnector, list[Exchange]]]


@pytest.fixture
def make(tryton_server: TrytonServer) -> Make:
    def build(
        company: str = DE,
        http: requests.Session | None = None,
        url: str | None = None,
        **options: Any,
    ) -> tuple[TrytonConnector, list[Exchange]]:
        exchanges: list[Exchange] = []
        config = ConnectionConfig(
            kind="tryton",
            base_url=url or tryton_server.url,
            database=tryton_server.database,
            login=API_LOGIN,
            password=API_PASSWORD,
            company=company,
            timeout_seconds=30.0,
            options=options,
        )
        return TrytonConnector(config, exchanges.append, http=http), exchanges

    return build


def invoice(
    ext: str,
    *,
    currency: str = "EUR",
    kind: Literal["invoice", "credit_memo"] = "invoice",
    due: datetime.date | None = None,
    party: Party | None = None,
) -> Document:
    lines = (
        DocumentLine(1, "API calls", D("1000"), D("0.0125"), D("12.50"), "4.2.2"),
        DocumentLine(2, "Platform fee", D("1"), D("99.00"), D("99.00"), "4.2.2"),
    )
    return Document(
        external_id=ext,
        kind=kind,
        number=f"N-{ext}",
        issue_date=TODAY,
        due_date=due or TODAY + datetime.timedelta(days=30),
        currency=currency,
        party=party or Party(code=f"acme-{ext}", name="Acme Corp"),
        receivable_account="1.2.1",
        lines=lines,
        taxes=(DocumentTax(D("0.0725"), D("111.50"), D("8.08"), "6.3.6", "CA sales tax"),),
        subtotal=D("111.50"),
        tax_total=D("8.08"),
        total=D("119.58"),
    )


def journal(
    ext: str,
    *,
    day: datetime.date = TODAY,
    amount: str = "250.00",
    lines: tuple[JournalLine, ...] = (),
) -> Journal:
    return Journal(
        external_id=ext,
        date=day,
        currency="EUR",
        description="revenue recognition",
        lines=lines
        or (
            JournalLine("1.1.1", D(amount), D("0")),
            JournalLine("4.2.2", D("0"), D(amount), description="recognised"),
        ),
    )


def invoices_in_tryton(admin: TrytonClient, ext: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin.call(
        "model.account.invoice.search_read",
        [("reference", "=", ext)],
        0,
        None,
        None,
        ["state", "total_amount", "ledgerline_external_id"],
    )
    return rows


def moves_in_tryton(admin: TrytonClient, ext: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin.call(
        "model.account.move.search_read",
        [("description", "=", ext)],
        0,
        None,
        None,
        ["state", "ledgerline_external_id"],
    )
    return rows


# ------------------------------------------------------------------ documents


def test_invoice_is_created_posted_and_read_back_to_the_cent(
    make: Make, admin: TrytonClient
) -> None:
    connector, _ = make()
    ext = f"ll-de-inv-{uid()}"

    record = connector.post_invoice(invoice(ext))

    assert (record.external_id, record.kind, record.state, record.posted) == (
        ext,
        "invoice",
        "posted",
        True,
    )
    assert record.erp_number
    assert (record.currency, record.total, record.tax_total) == ("EUR", D("119.58"), D("8.08"))
    found = connector.find_by_external_id("invoice", ext)
    assert found is not None and found.erp_id == record.erp_id
    assert sorted((ln.account, ln.debit, ln.credit) for ln in found.lines) == [
        ("1.2.1", D("119.58"), D("0")),
        ("4.2.2", D("0"), D("12.50")),
        ("4.2.2", D("0"), D("99.00")),
        ("6.3.6", D("0"), D("8.08")),
    ]
    (row,) = invoices_in_tryton(admin, ext)
    assert row["ledgerline_external_id"] == ext


def test_posting_twice_leaves_one_invoice(make: Make, admin: TrytonClient) -> None:
    connector, _ = make()
    ext = f"ll-de-inv-{uid()}"
    first = connector.post_invoice(invoice(ext))
    second, _ = make()
    again = second.post_invoice(invoice(ext))

    assert again.erp_id == first.erp_id
    assert [r["state"] for r in invoices_in_tryton(admin, ext)] == ["posted"]


def test_lost_answer_to_the_create_is_unknown_and_the_retry_posts_the_draft(
    make: Make, admin: TrytonClient
) -> None:
    http = Faulty()
    http.lose["model.account.invoice.create"] = 1
    connector, exchanges = make(http=http)
    ext = f"ll-de-inv-{uid()}"

    with pytest.raises(UnknownOutcome):
        connector.post_invoice(invoice(ext))
    assert [r["state"] for r in invoices_in_tryton(admin, ext)] == ["draft"]  # Tryton committed
    assert exchanges[-1].error_class == "unknown_outcome"

    record = connector.post_invoice(invoice(ext))

    assert record.posted
    assert [r["state"] for r in invoices_in_tryton(admin, ext)] == ["posted"]


def test_lost_answer_to_the_post_finds_it_posted(make: Make, admin: TrytonClient) -> None:
    http = Faulty()
    http.lose["model.account.invoice.ledgerline_post"] = 1
    connector, _ = make(http=http)
    ext = f"ll-de-inv-{uid()}"

    with pytest.raises(UnknownOutcome):
        connector.post_invoice(invoice(ext))
    record = connector.post_invoice(invoice(ext))

    assert record.posted
    assert [r["state"] for r in invoices_in_tryton(admin, ext)] == ["posted"]


def test_a_request_that_never_left_is_transient_not_unknown(
    make: Make, admin: TrytonClient
) -> None:
    http = Faulty()
    http.refuse["model.account.invoice.ledgerline_post"] = 1
    connector, exchanges = make(http=http)
    ext = f"ll-de-inv-{uid()}"

    with pytest.raises(TransientError) as raised:
        connector.post_invoice(invoice(ext))
    assert not isinstance(raised.value, UnknownOutcome)
    assert exchanges[-1].error_class == "transient"
    assert connector.post_invoice(invoice(ext)).posted
    assert len(invoices_in_tryton(admin, ext)) == 1


def test_tryton_itself_refuses_a_second_document_under_one_external_id(
    api: TrytonClient, make: Make
) -> None:
    connector, _ = make()
    ext = f"ll-de-je-{uid()}"
    record = connector.post_journal(journal(ext))
    (move,) = api.call(
        "model.account.move.read", [int(record.erp_id)], ["period", "journal", "company"]
    )
    lines = api.call(
        "model.account.move.line.search_read",
        [("move", "=", int(record.erp_id))],
        0,
        None,
        None,
        ["account", "debit", "credit"],
    )
    copy = {
        "company": move["company"],
        "journal": move["journal"],
        "period": move["period"],
        "date": TODAY,
        "description": "a copy made by hand",
        "ledgerline_external_id": ext,
        "lines": [
            [
                "create",
                [
                    {"account": ln["account"], "debit": ln["debit"], "credit": ln["credit"]}
                    for ln in lines
                ],
            ]
        ],
    }
    with pytest.raises(TrytonPermanentError) as refused:
        api.call("model.account.move.create", [copy])
    assert refused.value.message == (
        "Ledgerline external ID already used: this document is in Tryton already."
    )

    inv_ext = f"ll-de-inv-{uid()}"
    posted = connector.post_invoice(invoice(inv_ext))
    with pytest.raises(TrytonPermanentError, match="Ledgerline external ID already used"):
        api.call(
            "model.account.invoice.copy",
            [int(posted.erp_id)],
            {"ledgerline_external_id": inv_ext},
        )
    # a copy made in Tryton's client does not inherit the id
    (copied,) = api.call("model.account.invoice.copy", [int(posted.erp_id)], {})
    (row,) = api.call("model.account.invoice.read", [copied], ["ledgerline_external_id"])
    assert row["ledgerline_external_id"] is None


def test_credit_memo_is_a_tryton_credit_note(make: Make, admin: TrytonClient) -> None:
    connector, _ = make()
    ext = f"ll-de-cn-{uid()}"

    record = connector.post_credit_memo(invoice(ext, kind="credit_memo"))

    assert (record.kind, record.total, record.tax_total) == ("credit_memo", D("119.58"), D("8.08"))
    (row,) = invoices_in_tryton(admin, ext)
    assert row["total_amount"] == D("-119.58")  # Tryton books it as a negative invoice
    assert connector.external_ids(
        "credit_memo", start=TODAY, end=TODAY + datetime.timedelta(days=1), prefix=ext
    ) == [ext]
    assert (
        connector.external_ids(
            "invoice", start=TODAY, end=TODAY + datetime.timedelta(days=1), prefix=ext
        )
        == []
    )


def test_a_unit_price_tryton_cannot_hold_is_sent_as_the_line_amount(make: Make) -> None:
    connector, _ = make()
    ext = f"ll-de-inv-{uid()}"
    doc = invoice(ext)
    odd = DocumentLine(3, "Storage", D("3"), D("0.333333"), D("1.00"), "4.2.2")
    doc = Document(
        **{
            **doc.__dict__,
            "lines": (*doc.lines, odd),
            "taxes": (),
            "subtotal": D("112.50"),
            "tax_total": D("0"),
            "total": D("112.50"),
        }
    )
    assert connector.post_invoice(doc).total == D("112.50")


def test_invoice_due_in_the_past_warning_is_acknowledged(make: Make) -> None:
    connector, exchanges = make()
    ext = f"ll-de-inv-{uid()}"

    record = connector.post_invoice(invoice(ext, due=TODAY - datetime.timedelta(days=5)))

    assert record.posted
    methods = [e.method for e in exchanges]
    warned = methods.index("model.res.user.warning.skip")
    assert methods[warned - 1] == methods[warned + 1] == "model.account.invoice.ledgerline_post"
    assert "in the past" in json.dumps(exchanges[warned - 1].response)


def test_each_company_books_in_its_own_currency_and_chart(make: Make, admin: TrytonClient) -> None:
    jp, _ = make(JP)
    ext = f"ll-jp-inv-{uid()}"
    doc = Document(
        external_id=ext,
        kind="invoice",
        number="JP-1",
        issue_date=TODAY,
        due_date=TODAY + datetime.timedelta(days=30),
        currency="JPY",
        party=Party(code=f"yamada-{ext}", name="Yamada Shoji"),
        receivable_account="1.2.1",
        lines=(DocumentLine(1, "API calls", D("12345"), D("2"), D("24690"), "4.2.2"),),
        taxes=(DocumentTax(D("0.10"), D("24690"), D("2469"), "6.3.6", "JCT 10 %"),),
        subtotal=D("24690"),
        tax_total=D("2469"),
        total=D("27159"),
    )

    record = jp.post_invoice(doc)

    assert (record.currency, record.total, record.tax_total) == ("JPY", D("27159"), D("2469"))
    (row,) = admin.call(
        "model.account.invoice.search_read",
        [("ledgerline_external_id", "=", ext)],
        0,
        None,
        None,
        ["company.rec_name", "account.company"],
    )
    assert row["company."]["rec_name"] == JP
    assert jp.company()["currency"] == "JPY"
    de, _ = make(DE)
    assert de.company()["currency"] == "EUR"
    us, _ = make(US)
    assert us.company()["currency"] == "USD"
    assert de.find_by_external_id("invoice", ext) is not None  # ids are unique database-wide
    assert jp.external_ids("invoice", start=TODAY, end=TODAY + datetime.timedelta(1), prefix=ext)
    assert not de.external_ids(
        "invoice", start=TODAY, end=TODAY + datetime.timedelta(1), prefix=ext
    )


def test_party_is_created_once_and_found_by_code(make: Make, admin: TrytonClient) -> None:
    connector, _ = make(party_code_prefix="LL-US-")
    party = Party(code=f"globex-{uid()}", name="Globex LLC")

    first = connector.ensure_party(party)
    second, _ = make(party_code_prefix="LL-US-")
    assert second.ensure_party(party) == first
    assert admin.call(
        "model.party.party.search", [("code", "=", f"LL-US-{party.code}")], 0, None, None
    ) == [int(first)]


def test_unknown_account_is_permanent_and_names_it(make: Make, admin: TrytonClient) -> None:
    connector, _ = make()
    ext = f"ll-de-je-{uid()}"
    bad = journal(
        ext, lines=(JournalLine("9.9.9", D("1"), D("0")), JournalLine("4.2.2", D("0"), D("1")))
    )
    with pytest.raises(PermanentError) as refused:
        connector.post_journal(bad)
    assert refused.value.message == "Tryton has no account '9.9.9' in company 'Ledgerline GmbH'"
    assert moves_in_tryton(admin, ext) == []


def test_unbalanced_move_is_permanent_with_trytons_message(make: Make, admin: TrytonClient) -> None:
    connector, _ = make()
    ext = f"ll-de-je-{uid()}"
    bad = journal(
        ext,
        lines=(JournalLine("1.1.1", D("10.00"), D("0")), JournalLine("4.2.2", D("0"), D("10.01"))),
    )
    with pytest.raises(PermanentError) as refused:
        connector.post_journal(bad)
    (move,) = moves_in_tryton(admin, ext)
    assert refused.value.message == (
        f'To post move "({move["id"]})", you must balance all its lines debits and credits.'
    )
    assert move["state"] == "draft"


# ------------------------------------------------------------------ periods


def test_closed_period_is_permanent_then_reopened_period_and_journal_periods_work(
    make: Make, admin: TrytonClient
) -> None:
    connector, _ = make()
    day = datetime.date(TODAY.year + 1, 3, 10)  # a month no other test closes
    connector.post_journal(journal(f"ll-de-je-{uid()}", day=day))  # opens its journal-period
    (period,) = admin.call(
        "model.account.period.search",
        [
            ("company.party.name", "=", DE),
            ("type", "=", "standard"),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
        ],
        0,
        None,
        None,
    )
    admin.call("model.account.period.close", [period])
    journal_periods = admin.call(
        "model.account.journal.period.search_read",
        [("period", "=", period)],
        0,
        None,
        None,
        ["rec_name", "state"],
    )
    assert {jp["state"] for jp in journal_periods} == {"closed"}  # closed with the period
    (misc,) = [jp for jp in journal_periods if jp["rec_name"].startswith("Miscellaneous")]
    refusal = f'You cannot add/modify/delete lines on closed journal-period "{misc["rec_name"]}".'
    ext = f"ll-de-je-{uid()}"

    with pytest.raises(PermanentError) as refused:
        connector.post_journal(journal(ext, day=day))
    assert refused.value.message == refusal
    assert moves_in_tryton(admin, ext) == []  # refused whole: no draft left behind

    admin.call("model.account.period.reopen", [period])
    with pytest.raises(PermanentError) as still:
        connector.post_journal(journal(ext, day=day))
    assert still.value.message == refusal  # a reopened period keeps its journal-periods closed

    admin.call("model.account.journal.period.reopen", [jp["id"] for jp in journal_periods])
    record = connector.post_journal(journal(ext, day=day))

    assert record.posted and record.date == day
    assert [m["state"] for m in moves_in_tryton(admin, ext)] == ["posted"]


def test_a_draft_move_left_behind_is_re_dated_and_posted_on_the_date_sent_now(
    make: Make, admin: TrytonClient
) -> None:
    """An attempt created the move and never got to post it; the journal was re-dated since
    (the exception queue's date correction): the draft is moved to the new date and its
    period, and posted there, one move under the external id."""
    faulty = Faulty()
    connector, _ = make(http=faulty)
    old_day, new_day = datetime.date(TODAY.year + 1, 5, 12), datetime.date(TODAY.year + 1, 6, 3)
    ext = f"ll-de-je-{uid()}"
    faulty.refuse["model.account.move.ledgerline_post"] = 1
    with pytest.raises(TransientError):
        connector.post_journal(journal(ext, day=old_day), fresh=True)
    (draft,) = admin.call(
        "model.account.move.search_read",
        [("ledgerline_external_id", "=", ext)],
        0,
        None,
        None,
        ["state", "date", "period.start_date"],
    )
    assert draft["state"] == "draft" and draft["date"] == old_day

    record = connector.post_journal(journal(ext, day=new_day))

    assert record.posted and record.date == new_day
    (move,) = admin.call(
        "model.account.move.search_read",
        [("ledgerline_external_id", "=", ext)],
        0,
        None,
        None,
        ["state", "date", "period.start_date", "period.end_date"],
    )
    assert move["id"] == draft["id"] and move["state"] == "posted" and move["date"] == new_day
    assert move["period."]["start_date"] <= new_day <= move["period."]["end_date"]


# ------------------------------------------------------------------ wizards


def test_void_credits_the_posted_invoice_through_the_wizard(
    make: Make, admin: TrytonClient
) -> None:
    connector, _ = make()
    ext = f"ll-de-inv-{uid()}"
    connector.post_invoice(invoice(ext))
    void = f"ll-de-void-{uid()}"

    record = connector.cancel_invoice(
        external_id=ext, reason="customer cancelled", credit_external_id=void
    )
    again = connector.cancel_invoice(
        external_id=ext, reason="customer cancelled", credit_external_id=void
    )

    assert (record.state, again.state, again.erp_id) == ("cancelled", "cancelled", record.erp_id)
    credit = connector.find_by_external_id("invoice", void)
    assert credit is not None
    assert (credit.kind, credit.posted, credit.total) == ("credit_memo", True, D("119.58"))
    assert len(invoices_in_tryton(admin, ext)) == 1
    notes = admin.call(
        "model.account.invoice.search", [("ledgerline_external_id", "=", void)], 0, None, None
    )
    assert len(notes) == 1


def test_reversal_goes_through_the_cancel_wizard_once(make: Make, admin: TrytonClient) -> None:
    connector, _ = make()
    ext = f"ll-de-je-{uid()}"
    connector.post_journal(journal(ext))
    rev = f"{ext}-rev"
    later = TODAY + datetime.timedelta(days=1) if TODAY.day < 28 else TODAY

    record = connector.reverse_journal(external_id=ext, reversal_external_id=rev, date=later)
    again = connector.reverse_journal(external_id=ext, reversal_external_id=rev, date=later)

    assert record.erp_id == again.erp_id and record.posted and record.date == later
    assert sorted((ln.account, ln.debit, ln.credit) for ln in record.lines) == [
        ("1.1.1", D("0"), D("250.00")),
        ("4.2.2", D("250.00"), D("0")),
    ]
    assert len(moves_in_tryton(admin, rev)) == 1


# ------------------------------------------------------------------ sessions, records


def test_an_expired_session_logs_in_again(make: Make) -> None:
    connector, exchanges = make()
    connector.post_journal(journal(f"ll-de-je-{uid()}"))
    connector.client._post("common.db.logout", [], authenticated=True)  # Tryton forgets it
    exchanges.clear()

    assert connector.post_journal(journal(f"ll-de-je-{uid()}")).posted

    assert [(e.method, e.http_status) for e in exchanges[:3]] == [
        ("model.account.move.search_read", 401),
        ("common.db.login", 200),
        ("model.res.user.get_preferences", 200),
    ]


def test_exchanges_never_hold_the_password_or_the_session(make: Make) -> None:
    connector, exchanges = make()
    connector.post_invoice(invoice(f"ll-de-inv-{uid()}"))
    assert connector.client.session is not None
    text = json.dumps([e.__dict__ for e in exchanges], default=str)

    assert API_PASSWORD not in text
    assert connector.client.session.token not in text
    assert exchanges[0].method == "common.db.login"
    assert exchanges[0].request["params"][1] == {"password": "***"}
    assert all(e.latency_ms > 0 for e in exchanges)


def test_tryton_down_is_transient(make: Make) -> None:
    from .conftest import free_port

    connector, exchanges = make(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError) as raised:
        connector.post_journal(journal(f"ll-de-je-{uid()}"))
    assert not isinstance(raised.value, UnknownOutcome)
    assert exchanges and exchanges[0].error_class == "transient"
