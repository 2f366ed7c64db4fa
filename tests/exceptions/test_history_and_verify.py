"""The audit page's verify-chain button and field-by-field changes, and a case's history tab
(issue 15, item 4)."""

from __future__ import annotations

import pytest
from django.db import transaction

from core.actors import Actor
from exceptions import history
from exceptions.models import AuditEntry
from exceptions.services import audit_record, case_open_or_update
from tests.exceptions.test_audit import _tamper, _write_entries

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_auditor_verifies_an_intact_chain_from_the_page(client, auditor) -> None:
    _write_entries(3)
    client.force_login(auditor)
    page = client.get("/exceptions/audit/").content.decode()
    assert 'action="/exceptions/audit/verify/"' in page and "Verify the chain" in page
    assert "v: 0 → 1" in page  # before and after field by field, not raw dicts
    with transaction.atomic():
        audit_record(
            actor=Actor.system("tests"),
            action="invoice.void",
            object_type="billing.invoice",
            object_id="42",
        )
    page = client.get("/exceptions/audit/").content.decode()
    assert '<a href="/billing/invoices/42/history/">history</a>' in page
    result = client.post("/exceptions/audit/verify/").content.decode()
    assert "The chain is intact: 4 entries verified." in result


def test_the_page_names_the_first_broken_entry(client, auditor) -> None:
    entries = _write_entries(4)
    _tamper("UPDATE exceptions_auditentry SET reason = 'forged' WHERE id = %s", [entries[1].pk])
    client.force_login(auditor)
    result = client.post("/exceptions/audit/verify/").content.decode()
    assert "The chain is broken at entry #2" in result
    assert "its content does not match its hash (the entry was altered)" in result
    assert "1 entry before it verified" in result


def test_only_auditors_verify_and_only_by_post(client, approver, clerk, auditor) -> None:
    _write_entries(1)
    client.force_login(approver)
    assert "Verify the chain" not in client.get("/exceptions/audit/").content.decode()
    assert client.post("/exceptions/audit/verify/").status_code == 403
    client.force_login(clerk)
    assert client.post("/exceptions/audit/verify/").status_code == 403
    client.force_login(auditor)
    assert client.get("/exceptions/audit/verify/").status_code == 405


def test_case_history_has_its_own_and_its_sources_entries(client, clerk, auditor) -> None:
    actor = Actor.system("tests")
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="posting.failed",
            object_type="erp_sync.posting",
            object_id="77",
            before={"status": "in_flight"},
            after={"status": "failed", "attempts": 1},
        )
        case, _ = case_open_or_update(
            kind="posting_failed",
            fingerprint="posting:77",
            title="Posting 77 failed",
            source_type="erp_sync.posting",
            source_id="77",
            actor=actor,
        )
        audit_record(
            actor=actor, action="posting.failed", object_type="erp_sync.posting", object_id="78"
        )  # another posting's entry: not this case's
    rows = history.case_history(case=case)
    assert [r.action for r in rows] == ["posting.failed", "case.open"]
    assert rows[0].via == "source erp_sync.posting 77"
    assert history.FieldChange("status", "in_flight", "failed") in rows[0].changes
    assert history.FieldChange("attempts", "—", "1") in rows[0].changes
    client.force_login(clerk)
    page = client.get(f"/exceptions/cases/{case.pk}/history/").content.decode()
    assert "posting.failed" in page and "case.open" in page and "in_flight" in page
    assert (
        f'href="/exceptions/cases/{case.pk}/history/"'
        in client.get(f"/exceptions/cases/{case.pk}/").content.decode()
    )
    assert client.get("/exceptions/cases/999999/history/").status_code == 404
    assert AuditEntry.objects.count() == 3


def test_history_reads_each_entry_by_the_first_source_that_selects_it() -> None:
    actor = Actor.system("tests")
    with transaction.atomic():
        for i in ("1", "2"):
            audit_record(
                actor=actor,
                action="thing.change",
                object_type="t.thing",
                object_id=i,
                before={"a": 1},
                after={"a": 2},
            )
    rows = history.history(
        [history.own("t.thing", 1), history.related("t.thing", {"1": "one", "2": "two"})]
    )
    assert [(r.via, r.changes) for r in rows] == [
        ("", [history.FieldChange("a", "1", "2")]),
        ("two", [history.FieldChange("a", "1", "2")]),
    ]
    assert history.history([]) == []
