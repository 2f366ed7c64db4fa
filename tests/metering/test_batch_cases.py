"""A batch's exception cases and audit entries are written set-based (issue 12, item 2;
docs/decisions.md 50): the statements a batch runs do not grow with the cases it opens, the
chain stays whole, and a second batch counts on the same cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.actors import Actor
from exceptions.models import AuditEntry, ExceptionCase
from exceptions.services import (
    AuditSpec,
    CaseOpening,
    audit_content,
    audit_record_many,
    audit_verify_chain,
    cases_open_or_update_many,
    entry_hash_of,
)
from metering.services import usage_ingest
from tests.conftest import requires_postgres

pytestmark = pytest.mark.django_db
ACTOR = Actor.system("test")


def batch(n: int, run: str, refs: str = "new") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    ts = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    events = [
        {
            "source": "newapp",
            "event_id": f"{run}-{i}",
            "customer_ref": f"{refs}-{i}",
            "metric": "api_calls",
            "timestamp": ts,
        }
        for i in range(n)
    ]
    return [(e, e) for e in events]


def queries_of(n: int, run: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        result = usage_ingest(items=batch(n, run, refs=run), actor=ACTOR)
    assert result.counts["held"] == n
    return len(ctx.captured_queries)


# PostgreSQL only: held rows go in by one COPY there; SQLite's bulk_create splits a batch by its
# limit of variables a statement, so its count grows with the batch (16 against 30 here).
@requires_postgres
def test_a_batch_of_unmapped_customers_opens_its_cases_in_statements_that_do_not_grow(
    metrics: None,
) -> None:
    queries_of(1, "warm")  # the first batch also creates the month's partition, reads the catalog
    small = queries_of(3, "a")
    large = queries_of(300, "b")
    assert large == small, (small, large)
    assert ExceptionCase.objects.filter(kind="unmapped_customer").count() == 304
    assert AuditEntry.objects.filter(action="case.open").count() == 304
    checked, broken = audit_verify_chain()
    assert broken is None and checked == AuditEntry.objects.count()


def test_a_second_batch_counts_on_the_open_cases_and_audits_each(metrics: None) -> None:
    usage_ingest(items=batch(40, "a"), actor=ACTOR)
    with CaptureQueriesContext(connection) as ctx:
        usage_ingest(items=batch(40, "b"), actor=ACTOR)
    recur_queries = len(ctx.captured_queries)
    usage_ingest(items=batch(4, "c"), actor=ACTOR)  # the first 4 customers, a third time
    cases = ExceptionCase.objects.filter(kind="unmapped_customer")
    assert cases.count() == 40
    counts = sorted(cases.values_list("occurrence_count", flat=True))
    assert counts == [2] * 36 + [3] * 4
    recurs = AuditEntry.objects.filter(action="case.recur").order_by("seq")
    assert recurs.count() == 44
    last = recurs.last()
    assert last is not None and (last.before, last.after) == (
        {"occurrences": 2},
        {"occurrences": 3},
    )
    if connection.vendor == "postgresql":  # one UPDATE ... FROM unnest for all 40
        assert recur_queries < 30, recur_queries
    assert audit_verify_chain()[1] is None


def test_audit_record_many_hashes_what_audit_content_covers(db: None) -> None:
    specs = [
        AuditSpec("thing.touch", "core.thing", "1", "Thing 1", before=None, after={"b": [1, "é"]}),
        AuditSpec("thing.touch", "core.thing", "2", reason='tab\tquote" \\ newline\n', after=7),
        AuditSpec("thing.touch", "core.thing", "3", before={"z": 1, "a": {"y": None}}),
    ]
    with transaction.atomic():
        last = audit_record_many(actor=ACTOR, entries=specs)
    entries = list(AuditEntry.objects.filter(seq__gt=last - 3).order_by("seq"))
    assert [e.object_id for e in entries] == ["1", "2", "3"]
    assert entries[1].reason == 'tab\tquote" \\ newline\n' and entries[1].after == 7
    for entry in entries:
        assert entry_hash_of(entry) == entry.entry_hash
    assert entries[1].prev_hash == entries[0].entry_hash
    assert (
        audit_content(
            seq=entries[0].seq,
            at=entries[0].at,
            actor_kind=ACTOR.kind,
            actor_label=ACTOR.label,
            actor_user_id=None,
            actor_api_key_id=None,
            action="thing.touch",
            object_type="core.thing",
            object_id="1",
            object_repr="Thing 1",
            before=None,
            after={"b": [1, "é"]},
            reason="",
            prev_hash=entries[0].prev_hash,
        )
        .decode()
        .endswith(f',"seq":{entries[0].seq}}}')
    )
    assert audit_verify_chain()[1] is None


def test_cases_open_or_update_many_merges_one_fingerprint(
    db: None,
) -> None:
    openings = [CaseOpening(kind="k", fingerprint="fp", title="t", occurrences=2)] * 2
    with transaction.atomic():
        opened = cases_open_or_update_many(openings=openings, actor=ACTOR)
        audit_record_many(actor=ACTOR, entries=opened.audit)
    case = ExceptionCase.objects.get(pk=opened.case_ids["fp"])
    assert (case.occurrence_count, opened.created, len(opened.audit)) == (4, 1, 1)
