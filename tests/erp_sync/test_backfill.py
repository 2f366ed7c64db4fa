"""Backfill: a connection added later gets the postings of the entries booked before it, with
the external ids the ledger writer gives, once (running it twice writes nothing new), audited."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing import services as billing
from core.errors import AppError
from erp_sync import error_codes
from erp_sync.connectors.memory import memory_erp
from erp_sync.models import Posting
from erp_sync.services import (
    ledger_consume,
    outbox_drain,
    postings_backfill,
    revenue_recognize_due,
)
from exceptions.models import AuditEntry
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import erp_fixture  # noqa: F401 - the `erp` fixture
from tests.erp_sync.world import billed_world, memory_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def late_erp():
    found = memory_erp("late")
    found.reset()
    yield found
    found.reset()


def _shape(conn) -> dict[str, tuple[str, Decimal, str | None]]:
    """external id -> (document type, amount, the external id it depends on)."""
    return {
        p.external_id: (
            p.document_type,
            p.amount,
            p.depends_on.external_id if p.depends_on else None,
        )
        for p in Posting.objects.filter(connection=conn).select_related("depends_on")
    }


def _backfills() -> int:
    return AuditEntry.objects.filter(action="postings.backfill").count()


def test_a_connection_added_later_gets_every_posting_once_as_if_it_had_been_there(
    erp, late_erp
) -> None:
    world = billed_world(3)
    first = memory_connection(world.entity, options={"defer_by_journal": True})
    inv0, inv1, inv2 = world.invoices
    billing.credit_memo_issue(
        invoice=inv0, reason="goodwill", actor=ACTOR, now=datetime(2026, 12, 5, tzinfo=UTC)
    )
    billing.invoice_void(invoice=inv1, reason="duplicate", actor=ACTOR)
    billing.invoice_mark_paid(invoice=inv2, actor=ACTOR)
    ledger_consume(actor=ACTOR)
    revenue_recognize_due(actor=ACTOR, today=date(2026, 12, 31))
    assert outbox_drain(connection_id=first.pk).posted == Posting.objects.count()

    late = memory_connection(
        world.entity, name="late", database="late", options={"defer_by_journal": True}
    )
    assert not Posting.objects.filter(connection=late).exists()

    result = postings_backfill(
        connection=late, since=date(2026, 11, 1), actor=ACTOR, reason="new general ledger"
    )

    # the very postings the ledger writer gave the first connection: ids, types, amounts,
    # dependencies (a credit memo and the void wait for their invoice)
    assert _shape(late) == _shape(first)
    assert sorted(result.created) == sorted(_shape(first)) and result.skipped == []
    assert _backfills() == 1
    entry = AuditEntry.objects.get(action="postings.backfill")
    assert entry.after is not None and entry.after["created"] == len(result.created)
    assert entry.reason == "new general ledger"

    outbox_drain(connection_id=late.pk)
    assert set(Posting.objects.filter(connection=late).values_list("status", flat=True)) == {
        "posted"
    }
    assert set(late_erp.creates.values()) == {1}
    assert late_erp.records[("invoice", f"ll-inv-{inv1.pk}")].state == "cancelled"

    # twice: nothing new, one more audit entry saying so
    again = postings_backfill(connection=late, since=date(2026, 11, 1), actor=ACTOR)
    assert again.created == [] and again.existing == result.existing + len(
        {p.entry_id for p in Posting.objects.filter(connection=late)}
    )
    assert _backfills() == 2
    assert Posting.objects.filter(connection=late).count() == len(result.created)


def test_only_entries_from_the_date_and_a_void_of_an_invoice_never_sent_is_skipped(
    erp, late_erp
) -> None:
    world = billed_world(2, month="2026-10", finalize_at=datetime(2026, 11, 3, 10, tzinfo=UTC))
    memory_connection(world.entity)
    inv0, inv1 = world.invoices
    billing.credit_memo_issue(
        invoice=inv0, reason="goodwill", actor=ACTOR, now=datetime(2026, 12, 1, 12, tzinfo=UTC)
    )
    billing.invoice_void(invoice=inv1, reason="duplicate", actor=ACTOR)
    ledger_consume(actor=ACTOR)
    late = memory_connection(world.entity, name="late", database="late")
    credit_id = Posting.objects.get(document_type="credit_memo").source_document_id

    result = postings_backfill(connection=late, since=date(2026, 11, 15), actor=ACTOR)

    # the invoices (3 November) are before the date; the credit memo is after it and goes
    # alone (its invoice is not in that ERP); the void has nothing to cancel there
    assert result.created == [f"ll-cn-{credit_id}"]
    (credit,) = Posting.objects.filter(connection=late)
    assert credit.document_type == "credit_memo" and credit.depends_on is None
    assert len(result.skipped) == 1 and f"ll-inv-{inv1.pk}" in result.skipped[0]
    assert outbox_drain(connection_id=late.pk).posted == 1


def test_a_summarized_journal_connection_is_refused_with_a_clear_error() -> None:
    world = billed_world(1)
    conn = memory_connection(world.entity, database="sum", mode="summarized_journals")
    with pytest.raises(AppError) as refused:
        postings_backfill(connection=conn, since=date(2026, 11, 1), actor=ACTOR)
    assert refused.value.code == error_codes.BACKFILL_NOT_DOCUMENTS
    assert "nothing to backfill" in refused.value.message
    assert _backfills() == 0


def test_the_management_command_backfills_and_names_bad_input(erp, late_erp) -> None:
    world = billed_world(2)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    memory_connection(world.entity, name="late", database="late")
    out = StringIO()
    args = ["--connection", "late", "--since", "2026-11-01", "--reason", "added late"]
    call_command("erp_backfill_postings", *args, stdout=out)
    assert "late: 2 posting(s) written, 0 entries had theirs already, 0 skipped" in out.getvalue()
    out = StringIO()
    call_command("erp_backfill_postings", *args, stdout=out)
    assert "late: 0 posting(s) written, 2 entries had theirs already" in out.getvalue()
    with pytest.raises(CommandError, match="--since: not a date"):
        call_command(
            "erp_backfill_postings", "--connection", "late", "--since", "11/2026", "--reason", "x"
        )
    with pytest.raises(CommandError, match="--connection: no ERP connection named 'nope'"):
        call_command(
            "erp_backfill_postings",
            "--connection",
            "nope",
            "--since",
            "2026-11-01",
            "--reason",
            "x",
        )


def test_the_admin_action_asks_for_the_date_then_backfills(client, erp, late_erp) -> None:
    from django.contrib.auth import get_user_model

    world = billed_world(1)
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    late = memory_connection(world.entity, name="late", database="late")
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)
    url = "/admin/erp_sync/erpconnection/"
    form = client.post(url, {"action": "backfill_postings", "_selected_action": [late.pk]})
    assert form.status_code == 200 and "First entry date" in form.content.decode()
    bad = client.post(
        url,
        {"action": "backfill_postings", "_selected_action": [late.pk], "apply": "1", "since": "x"},
    )
    assert bad.status_code == 200 and "Enter a valid date." in bad.content.decode()
    assert not Posting.objects.filter(connection=late).exists()
    done = client.post(
        url,
        {
            "action": "backfill_postings",
            "_selected_action": [late.pk],
            "apply": "1",
            "since": "2026-11-01",
            "reason": "added late",
        },
    )
    assert done.status_code == 302, done.content.decode()[:3000]
    assert Posting.objects.filter(connection=late).count() == 1
    assert AuditEntry.objects.get(action="postings.backfill").actor_label == "root"
