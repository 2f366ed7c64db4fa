"""ERP pages: postings, attempts, replay (role-checked on the server), reconciliation, admin."""

from __future__ import annotations

from datetime import date

import pytest

from erp_sync.connectors.memory import memory_erp
from erp_sync.models import AccountMapping, Posting, ReconciliationRun
from erp_sync.services import ledger_consume, outbox_drain
from exceptions.models import ExceptionCase
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import billed_world, memory_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_posting():
    erp = memory_erp("test")
    erp.reset()
    world = billed_world()
    memory_connection(world.entity)
    ledger_consume(actor=ACTOR)
    erp.closed_before = date(2027, 1, 1)
    outbox_drain()
    erp.closed_before = None
    yield Posting.objects.get()
    erp.reset()


def test_postings_pages_show_the_erps_message_and_every_attempt(
    client, clerk, failed_posting
) -> None:
    client.force_login(clerk)
    listing = client.get("/erp/postings/?status=failed")
    assert listing.status_code == 200 and failed_posting.external_id in listing.content.decode()
    detail = client.get(f"/erp/postings/{failed_posting.pk}/").content.decode()
    assert "The period of &quot;2026-12-03&quot; is closed." in detail
    assert "Send again" not in detail  # a clerk cannot replay


def test_replay_is_refused_to_a_clerk_and_done_for_an_approver(
    client, clerk, approver, failed_posting
) -> None:
    client.force_login(clerk)
    assert (
        client.post(f"/erp/postings/{failed_posting.pk}/replay/", {"reason": "x"}).status_code
        == 403
    )
    failed_posting.refresh_from_db()
    assert failed_posting.status == "failed"
    client.force_login(approver)
    response = client.post(
        f"/erp/postings/{failed_posting.pk}/replay/", {"reason": "period reopened"}
    )
    assert response.status_code == 302
    failed_posting.refresh_from_db()
    assert failed_posting.status == "pending"
    outbox_drain()
    failed_posting.refresh_from_db()
    assert failed_posting.status == "posted"
    assert ExceptionCase.objects.get(kind="posting_failed").status == "resolved"


def test_reconciliation_page_runs_and_shows_the_columns(client, clerk, failed_posting) -> None:
    client.force_login(clerk)
    response = client.post("/erp/reconciliation/run/", {"entity": "ll-us", "period": "2026-12"})
    assert response.status_code == 302
    run = ReconciliationRun.objects.get()
    page = client.get(response["Location"]).content.decode()
    assert "Ledger receivable" in page and "221.1" in page
    assert run.totals["currencies"][0]["connections"]["erp"]["unposted"] == 1


def test_account_mapping_saved_in_the_admin_goes_through_the_service(
    client, integrator, failed_posting
) -> None:
    client.force_login(integrator)
    assert client.get("/admin/erp_sync/erpconnection/").status_code == 200
    assert client.get(f"/admin/erp_sync/posting/{failed_posting.pk}/change/").status_code == 200
    response = client.post(
        "/admin/erp_sync/accountmapping/add/",
        {
            "connection": failed_posting.connection_id,
            "role": "credit_memo",
            "key": "",
            "account": "4900",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AccountMapping.objects.filter(role="credit_memo", account="4900").exists()
    from exceptions.models import AuditEntry

    assert (
        AuditEntry.objects.filter(action="account_mapping.set", after__account="4900").count() == 1
    )
