"""verify_audit --anchor: the chain's head is exported outside the database, and a chain that
lost its newest entries (or its whole table) no longer matches it (issue 12, item 5)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from core.actors import Actor
from exceptions.models import AuditChainHead, AuditEntry
from exceptions.services import AuditSpec, audit_record_many

pytestmark = pytest.mark.django_db


def append(n: int) -> None:
    with transaction.atomic():
        audit_record_many(
            actor=Actor.system("t"),
            entries=[AuditSpec("thing.touch", "core.thing", str(i)) for i in range(n)],
        )


def test_the_head_is_exported_and_checked(tmp_path: Path) -> None:
    anchor = tmp_path / "audit-head.json"
    append(3)
    call_command("verify_audit", anchor=str(anchor), stdout=io.StringIO())
    exported = json.loads(anchor.read_text())
    last = AuditEntry.objects.order_by("-seq").first()
    assert last is not None and exported == {"seq": last.seq, "hash": last.entry_hash}
    append(2)
    call_command("verify_audit", anchor=str(anchor), stdout=io.StringIO())
    assert json.loads(anchor.read_text())["seq"] == last.seq + 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="disables PostgreSQL's triggers")
def test_deleting_the_newest_entries_is_detected(tmp_path: Path) -> None:
    anchor = tmp_path / "audit-head.json"
    append(4)
    call_command("verify_audit", anchor=str(anchor), stdout=io.StringIO())
    last = AuditEntry.objects.order_by("-seq").first()
    assert last is not None
    # What an attacker with the owner's rights does: drop the newest entries, move the head back.
    with connection.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")  # triggers off
        cur.execute("DELETE FROM exceptions_auditentry WHERE seq >= %s", [last.seq - 1])
        cur.execute("SET LOCAL session_replication_role = origin")
    before = AuditEntry.objects.order_by("-seq").first()
    AuditChainHead.objects.filter(pk=1).update(
        last_seq=before.seq if before else 0, last_hash=before.entry_hash if before else "0" * 64
    )
    call_command("verify_audit", stdout=io.StringIO())  # the chain alone looks whole
    with pytest.raises(CommandError, match="no longer holds entry"):
        call_command("verify_audit", anchor=str(anchor), stdout=io.StringIO())
