"""The audit trail: same-transaction writes, append-only, hash-chained, verifiable."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from core.services import customer_create
from exceptions.models import AuditChainHead, AuditEntry
from core.actors import Actor
from exceptions.services import (
    AuditOutsideTransaction,
    AuditSpec,
    audit_append_cte,
    audit_record,
    audit_verify_chain,
    entry_hash_of,
)
from tests.conftest import requires_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def _write_entries(n: int) -> list[AuditEntry]:
    actor = Actor.system("tests")
    out = []
    for i in range(n):
        with transaction.atomic():
            out.append(
                audit_record(
                    actor=actor,
                    action="test.write",
                    object_type="tests.thing",
                    object_id=str(i),
                    before={"v": i},
                    after={"v": i + 1},
                    reason=f"step {i}",
                )
            )
    return out


def test_entry_is_written_in_the_callers_transaction(entity_us) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with transaction.atomic():
            customer_create(
                legal_entity=entity_us, code="gone", name="Gone", actor=Actor.system("t")
            )
            assert AuditEntry.objects.filter(action="customer.create").count() == 1
            raise Boom
    assert not AuditEntry.objects.filter(action="customer.create").exists()
    assert not AuditChainHead.objects.filter(last_seq__gt=0).exists()

    customer_create(legal_entity=entity_us, code="kept", name="Kept", actor=Actor.system("t"))
    entry = AuditEntry.objects.get(action="customer.create")
    assert entry.seq == 1 and entry.object_repr.startswith("kept")


def test_recording_outside_a_transaction_is_refused() -> None:
    with pytest.raises(AuditOutsideTransaction):
        audit_record(actor=Actor.system("t"), action="x.y", object_type="a.b", object_id="1")
    assert not AuditEntry.objects.exists()


def test_entries_chain_by_hash() -> None:
    entries = _write_entries(3)
    assert entries[0].prev_hash == "0" * 64
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[2].prev_hash == entries[1].entry_hash
    for e in AuditEntry.objects.all():
        assert entry_hash_of(e) == e.entry_hash  # survives the database round trip
    assert audit_verify_chain() == (3, None)
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "3 entries verified" in out.getvalue()


@requires_postgres
def test_postgres_refuses_update_and_delete_of_audit_rows() -> None:
    entry = _write_entries(1)[0]
    with pytest.raises((IntegrityError, DatabaseError), match="append-only"):
        with transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises((IntegrityError, DatabaseError), match="append-only"):
        with transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.get(pk=entry.pk).reason == "step 0"


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE exceptions_auditentry DISABLE TRIGGER USER")
        cur.execute(sql, params)
        if connection.vendor == "postgresql":
            cur.execute("ALTER TABLE exceptions_auditentry ENABLE TRIGGER USER")


def test_an_altered_entry_makes_verify_audit_fail_naming_it() -> None:
    entries = _write_entries(4)
    _tamper(
        "UPDATE exceptions_auditentry SET reason = %s WHERE id = %s",
        ["nothing to see", entries[2].pk],
    )
    with pytest.raises(CommandError) as excinfo:
        call_command("verify_audit")
    message = str(excinfo.value)
    assert f"entry #3 (id {entries[2].pk})" in message
    assert "altered" in message
    assert "2 entries before it are intact" in message


def test_a_deleted_entry_makes_verify_audit_fail_naming_the_gap() -> None:
    entries = _write_entries(3)
    _tamper("DELETE FROM exceptions_auditentry WHERE id = %s", [entries[1].pk])
    with pytest.raises(CommandError, match="entry #2 is missing"):
        call_command("verify_audit")


def test_a_deleted_last_entry_is_caught_by_the_head() -> None:
    entries = _write_entries(2)
    _tamper("DELETE FROM exceptions_auditentry WHERE id = %s", [entries[1].pk])
    with pytest.raises(CommandError, match="head says #2"):
        call_command("verify_audit")


def test_rewriting_an_entry_and_its_hash_is_still_caught_by_the_next_link() -> None:
    entries = _write_entries(3)
    forged = AuditEntry.objects.get(pk=entries[0].pk)
    forged.reason = "forged"
    _tamper(
        "UPDATE exceptions_auditentry SET reason = %s, entry_hash = %s WHERE id = %s",
        ["forged", entry_hash_of(forged), entries[0].pk],
    )
    with pytest.raises(CommandError, match="entry #2 .*prev_hash"):
        call_command("verify_audit")


def test_audit_page_filters_by_object_actor_action_and_date(client, auditor) -> None:
    _write_entries(2)
    with transaction.atomic():
        audit_record(
            actor=Actor.for_user(auditor),
            action="invoice.finalize",
            object_type="billing.invoice",
            object_id="42",
        )
    client.force_login(auditor)
    page = client.get("/exceptions/audit/", {"object_type": "billing.invoice"})
    assert page.status_code == 200
    assert b"invoice.finalize" in page.content and b"test.write" not in page.content
    assert b"invoice.finalize" not in client.get("/exceptions/audit/", {"actor": "tests"}).content
    assert b"invoice.finalize" in client.get("/exceptions/audit/", {"action": "invoice"}).content
    assert (
        b"No entries match" in client.get("/exceptions/audit/", {"date_to": "2000-01-01"}).content
    )
    bad = client.get("/exceptions/audit/", {"date_from": "yesterday"})
    assert bad.status_code == 200 and b"is not a date" in bad.content


def test_audit_date_to_includes_the_whole_last_day() -> None:
    from datetime import UTC, date, datetime

    from exceptions import selectors

    _write_entries(1)
    last_instant = datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC)
    _tamper("UPDATE exceptions_auditentry SET at = %s", [last_instant])
    assert selectors.audit_entries(date_to=date(2026, 11, 24)).count() == 1
    assert selectors.audit_entries(date_from=date(2026, 11, 25)).count() == 0


def _append_in_one_statement(actor: Actor, i: int, *, changed: bool = True) -> int | None:
    """An entry appended by audit_append_cte in one autocommit statement (guarded by a CTE
    that returns a row when `changed`); returns its seq, None when nothing was appended."""
    sql, params = audit_append_cte(
        actor=actor,
        spec=AuditSpec("test.cte", "tests.thing", str(i), before={"v": i}, reason=f"cte {i}"),
        guard="_changed",
    )
    with connection.cursor() as cur:
        cur.execute(
            f"WITH _changed AS (SELECT 1 AS x WHERE %s), {sql} SELECT (SELECT seq FROM _audit_entry)",
            [changed, *params],
        )
        row = cur.fetchone()
    return None if row is None else row[0]


@requires_postgres
def test_an_entry_appended_in_the_callers_statement_chains_like_any_other() -> None:
    actor = Actor.system("tests")
    _write_entries(1)
    assert _append_in_one_statement(actor, 1) == 2
    assert _append_in_one_statement(actor, 2, changed=False) is None  # nothing changed
    _write_entries(1)
    assert list(AuditEntry.objects.order_by("seq").values_list("seq", "action")) == [
        (1, "test.write"),
        (2, "test.cte"),
        (3, "test.write"),
    ]
    assert AuditChainHead.objects.get().last_seq == 3
    assert audit_verify_chain() == (3, None)


@requires_postgres
def test_statement_appends_and_transaction_appends_at_once_keep_one_chain() -> None:
    import threading

    actor = Actor.system("tests")
    _write_entries(1)  # the head row exists
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            start.wait()
            for i in range(15):
                if k % 2:
                    _append_in_one_statement(actor, 100 * k + i)
                else:
                    with transaction.atomic():
                        audit_record(
                            actor=actor, action="test.write", object_type="a.b", object_id=str(i)
                        )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert AuditEntry.objects.filter(action="test.cte").count() == 30
    assert audit_verify_chain() == (61, None)


@requires_postgres
def test_a_statement_append_without_a_chain_head_fails_the_whole_statement() -> None:
    AuditChainHead.objects.all().delete()
    with pytest.raises(IntegrityError):
        _append_in_one_statement(Actor.system("tests"), 1)
    assert not AuditEntry.objects.exists()
