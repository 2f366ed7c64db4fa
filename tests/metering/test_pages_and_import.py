"""Control totals page, CSV upload with progress and error report, import_usage,
the refresh task and its schedule, and the admin screens that go through services."""

from __future__ import annotations

from rest_framework.test import APIClient
from typing import Any
from collections.abc import Callable
from pytest_django import DjangoCaptureOnCommitCallbacks
from django.db.models import Sum
from django.http import FileResponse

from tests.metering.conftest import KeyedClient
from pytest_django import Settings
from django.contrib.auth.models import User

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from core.models import Customer
from exceptions.models import AuditEntry
from metering.models import CustomerMapping, ImportJob, MetricDefinition, UsageEvent, UsageSummary
from metering.services import usage_summaries_close, usage_summarize_window
from metering.tasks import refresh_usage_summaries, run_import_job
from tests.metering.conftest import iso
from tests.metering.factories import TEST_ACTOR

pytestmark = pytest.mark.usefixtures("metrics", "mapped")


def csv_file(now: datetime, rows: int = 5) -> bytes:
    ts = iso(now - timedelta(hours=1))
    lines = ["event_id,source,customer_ref,metric,timestamp,value,properties"]
    for i in range(rows):
        lines.append(f'r{i},app,acct-1,storage_gb,{ts},{i}.5,"{{""region"": ""eu""}}"')
    lines.append(f'r0,app,acct-1,storage_gb,{ts},0.5,"{{""region"": ""eu""}}"')  # duplicate
    lines.append("bad-ts,app,acct-1,storage_gb,not-a-time,1,")
    lines.append(f"bad-json,app,acct-1,storage_gb,{ts},1,{{oops")
    lines.append(f"held,app,nobody,api_calls,{ts},,")
    return ("\n".join(lines) + "\n").encode()


def login(user: User) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_import_usage_command_streams_and_reports(tmp_path: Path, now: datetime) -> None:
    path = tmp_path / "usage.csv"
    path.write_bytes(csv_file(now))
    out = io.StringIO()
    call_command("import_usage", str(path), "--no-progress", stdout=out)
    assert "9 rows: 5 accepted, 1 duplicate, 2 rejected, 1 held" in out.getvalue()
    total = UsageEvent.objects.aggregate(total=Sum("value"))["total"]
    assert total == Decimal("12.5")  # .5+1.5+...+4.5
    report = list(csv.DictReader((tmp_path / "usage.errors.csv").open()))
    assert [(r["line"], r["status"], r["code"]) for r in report] == [
        ("7", "duplicate", "duplicate_in_request"),
        ("8", "rejected", "invalid_timestamp"),
        ("9", "rejected", "invalid_field"),
        ("10", "held", "unmapped_customer"),
    ]
    assert all(r["message"] for r in report)
    assert AuditEntry.objects.filter(action="usage.ingest").count() == 1  # one batch


def test_import_usage_refuses_a_file_without_the_columns(tmp_path: Path) -> None:
    from django.core.management.base import CommandError

    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(CommandError, match="lacks the column"):
        call_command("import_usage", str(path), "--no-progress")


def test_upload_page_progress_and_error_report(
    clerk: User,
    now: datetime,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    settings: Settings,
    tmp_path: Path,
) -> None:
    settings.MEDIA_ROOT = tmp_path
    c = login(clerk)
    assert c.get("/metering/imports/").status_code == 200
    upload = SimpleUploadedFile("usage.csv", csv_file(now), content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        resp = c.post("/metering/imports/", {"file": upload})
    assert resp.status_code == 302 and len(callbacks) == 1  # the task is queued after commit
    job = ImportJob.objects.get()
    page = c.get(f"/metering/imports/{job.pk}/")
    assert b'hx-trigger="every 1s"' in page.content  # polls while queued
    run_import_job(job.pk)
    job.refresh_from_db()
    assert (job.status, job.rows, job.accepted, job.rejected, job.held) == ("done", 9, 5, 2, 1)
    partial = c.get(f"/metering/imports/{job.pk}/", HTTP_HX_REQUEST="true")
    assert b"every 1s" not in partial.content and b"100%" in partial.content
    download = c.get(f"/metering/imports/{job.pk}/errors.csv")
    assert isinstance(download, FileResponse)
    report = b"".join(download.streaming_content).decode()
    assert "invalid_timestamp" in report and report.startswith("line,event_id,status,code,message")
    run_import_job(job.pk)  # safe to run twice
    assert UsageEvent.objects.count() == 5
    bad = c.post("/metering/imports/", {"file": SimpleUploadedFile("x.txt", b"x")})
    assert bad.status_code == 200 and b"Upload a .csv file" in bad.content


def test_control_totals_page(
    clerk: User, writer: KeyedClient, event: Callable[..., dict[str, Any]], client: Client
) -> None:
    import orjson

    writer.post(
        "/api/v1/events",
        data=orjson.dumps({"events": [event("p1"), event("p1"), event("p2", metric="x")]}),
        content_type="application/json",
    )
    page = login(clerk).get("/metering/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "<td>app</td><td>3</td>" in text.replace("\n", "").replace("      ", "")
    assert client.get("/metering/").status_code == 302  # login first


def test_refresh_task_and_its_schedule(customer_acme: Customer, now: datetime) -> None:
    from django_q.models import Schedule

    assert Schedule.objects.filter(func="metering.tasks.refresh_usage_summaries").exists()
    from tests.metering.factories import put_event

    metric = MetricDefinition.objects.get(code="api_calls")
    start = now - timedelta(days=2)
    end = now + timedelta(days=1)
    put_event(customer=customer_acme, metric=metric, at=now - timedelta(hours=1))
    s = usage_summarize_window(period_start=start, period_end=end, actor=TEST_ACTOR)[0]
    assert refresh_usage_summaries() == 0  # nothing new
    put_event(customer=customer_acme, metric=metric, at=now - timedelta(hours=2))
    assert refresh_usage_summaries() == 1
    s.refresh_from_db()
    assert s.quantity == 2
    usage_summaries_close(summary_ids=[s.pk], actor=TEST_ACTOR)
    put_event(customer=customer_acme, metric=metric, at=now - timedelta(hours=3))
    assert refresh_usage_summaries() == 1  # late usage: revision 1
    latest = UsageSummary.objects.order_by("-revision").first()
    assert latest is not None
    assert (latest.revision, latest.quantity) == (1, Decimal(3))


def test_admin_creates_metrics_and_mappings_through_services(
    integrator: User, customer_acme: Customer
) -> None:
    c = login(integrator)
    resp = c.post(
        "/admin/metering/metricdefinition/add/",
        {
            "code": "seats",
            "name": "Seats",
            "unit": "seat",
            "aggregation": "max",
            "value_property": "n",
            "properties_schema": "{}",
            "effective_from": "",
            "reason": "",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert resp.status_code == 302, resp.content[:2000]
    metric = MetricDefinition.objects.get(code="seats")
    assert metric.versions.get().aggregation == "max"
    assert AuditEntry.objects.filter(action="metric.create", object_id=str(metric.pk)).count() == 1
    resp = c.post(
        f"/admin/metering/metricdefinition/{metric.pk}/change/",
        {
            "name": "Peak seats",
            "unit": "seat",
            "aggregation": "max",
            "value_property": "n",
            "properties_schema": "{}",
            "effective_from": "",
            "reason": "rename",
            "versions-TOTAL_FORMS": "1",
            "versions-INITIAL_FORMS": "1",
            "versions-0-id": metric.versions.get().pk,
            "versions-0-metric": metric.pk,
        },
    )
    assert resp.status_code == 302
    assert list(metric.versions.order_by("version").values_list("name", flat=True)) == [
        "Seats",
        "Peak seats",
    ]

    resp = c.post(
        "/admin/metering/customermapping/add/",
        {"source": "crm", "customer_ref": "A-1", "customer": customer_acme.pk},
    )
    assert resp.status_code == 302
    assert CustomerMapping.objects.filter(source="crm").exists()
    assert AuditEntry.objects.filter(action="mapping.create").count() == 1


def test_metric_and_mapping_api(admin_client: APIClient, customer_acme: Customer) -> None:
    created = admin_client.post(
        "/api/v1/metering/metrics",
        {
            "code": "gpu_hours",
            "name": "GPU hours",
            "aggregation": "sum",
            "value_property": "hours",
            "properties_schema": {"type": "object"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["versions"][0]["aggregation"] == "sum"
    bad = admin_client.post(
        "/api/v1/metering/metrics", {"code": "x", "name": "X", "aggregation": "sum"}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["code"] == "metric_invalid"
    dup = admin_client.post(
        "/api/v1/metering/metrics",
        {"code": "gpu_hours", "name": "X", "aggregation": "count"},
        format="json",
    )
    assert dup.status_code == 409 and dup.json()["code"] == "metric_exists"
    v2 = admin_client.post(
        "/api/v1/metering/metrics/gpu_hours/versions",
        {"effective_from": iso(datetime.now(UTC)), "properties_schema": {"required": ["gpu"]}},
        format="json",
    )
    assert v2.status_code == 201 and len(v2.json()["versions"]) == 2
    assert (
        admin_client.post(
            "/api/v1/metering/metrics/none/versions",
            {"effective_from": iso(datetime.now(UTC))},
            format="json",
        ).status_code
        == 404
    )
    listing = admin_client.get("/api/v1/metering/metrics").json()
    assert {m["code"] for m in listing["results"]} >= {"gpu_hours", "api_calls"}
    maps = admin_client.get("/api/v1/metering/mappings?source=app").json()
    assert maps["results"][0]["customer"] == customer_acme.code


@pytest.mark.taskqueue
@pytest.mark.django_db(transaction=True)
def test_upload_goes_through_the_broker_to_the_import_task(
    clerk: User, now: datetime, settings: Settings, tmp_path: Path
) -> None:
    from importlib import import_module

    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    settings.MEDIA_ROOT = tmp_path
    broker = get_broker()
    broker.purge_queue()
    upload = SimpleUploadedFile("usage.csv", csv_file(now, rows=3), content_type="text/csv")
    assert login(clerk).post("/metering/imports/", {"file": upload}).status_code == 302
    job = ImportJob.objects.get()
    items = broker.dequeue()
    assert items, "the upload queued nothing"
    ack_id, payload = items[0]
    task = SignedPackage.loads(payload)
    assert (task["func"], task["args"]) == ("metering.tasks.run_import_job", (job.pk,))
    module, func = task["func"].rsplit(".", 1)
    getattr(import_module(module), func)(*task["args"])
    broker.acknowledge(ack_id)
    job.refresh_from_db()
    assert (job.status, job.accepted, job.rejected) == ("done", 3, 2)


def test_an_auditor_cannot_upload_usage(client: Client, auditor: User) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from metering.models import ImportJob

    client.force_login(auditor)
    upload = SimpleUploadedFile(
        "u.csv", b"event_id,source,customer_ref,metric,timestamp\n", "text/csv"
    )
    response = client.post("/metering/imports/", {"file": upload})
    assert response.status_code == 403
    assert not ImportJob.objects.exists()


# --- the import to the letter (issue 11): lines, encodings, header, codes, source ---------------


def _import(tmp_path: Path, content: bytes, *args: str) -> tuple[str, list[dict[str, str]]]:
    path = tmp_path / "usage.csv"
    path.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    call_command("import_usage", str(path), "--no-progress", *args, stdout=out, stderr=err)
    report = list(csv.DictReader((tmp_path / "usage.errors.csv").open(encoding="utf-8")))
    return out.getvalue() + err.getvalue(), report


def test_the_report_names_the_files_own_line(tmp_path: Path, now: datetime) -> None:
    ts = iso(now - timedelta(hours=1))
    content = (
        "event_id,source,customer_ref,metric,timestamp,value,properties\n"
        "\n"  # line 2: blank
        f'q1,app,acct-1,storage_gb,{ts},1,"{{""region"":\n""eu""}}"\n'  # lines 3-4: one row
        "\n"
        f"q2,app,acct-1,storage_gb,not-a-time,1,\n"  # line 6
    ).encode()
    _, report = _import(tmp_path, content)
    assert [(r["line"], r["event_id"], r["code"]) for r in report] == [
        ("6", "q2", "invalid_timestamp")
    ]
    assert UsageEvent.objects.get().properties == {"region": "eu"}


def test_bytes_not_in_the_encoding_are_refused_with_line_and_byte(
    tmp_path: Path, now: datetime, customer_acme: Customer
) -> None:
    from django.core.management.base import CommandError

    ts = iso(now - timedelta(hours=1))
    content = (
        "event_id,source,customer_ref,metric,timestamp\n"
        f"m1,app,acct-1,api_calls,{ts}\n"
        f"m2,app,acct_m\xfcller,api_calls,{ts}\n"
    ).encode("latin-1")
    with pytest.raises(
        CommandError, match=r"Line 3 is not utf-8: byte 14 of the line \(byte 105 of the file\)"
    ):
        _import(tmp_path, content)
    assert not UsageEvent.objects.exists()  # refused before any row
    CustomerMapping.objects.create(source="app", customer_ref="acct_müller", customer=customer_acme)
    _import(tmp_path, content, "--encoding", "cp1252")
    assert set(UsageEvent.objects.values_list("customer_ref", flat=True)) == {
        "acct-1",
        "acct_müller",
    }


def test_duplicates_say_whether_they_conflict(tmp_path: Path, now: datetime) -> None:
    ts = iso(now - timedelta(hours=1))
    head = "event_id,source,customer_ref,metric,timestamp,value\n"
    _import(
        tmp_path,
        (head + f"d1,app,acct-1,storage_gb,{ts},1\nd2,app,acct-1,storage_gb,{ts},1\n").encode(),
    )
    _, report = _import(
        tmp_path,
        (head + f"d1,app,acct-1,storage_gb,{ts},1\nd2,app,acct-1,storage_gb,{ts},2\n").encode(),
    )
    assert [(r["event_id"], r["code"]) for r in report] == [
        ("d1", "duplicate"),
        ("d2", "duplicate_conflict"),
    ]
    assert "different content" in report[1]["message"]


def test_rows_without_a_source_count_under_the_imports_source(
    tmp_path: Path, now: datetime
) -> None:
    from metering.models import IngestTally, RejectedEvent

    ts = iso(now - timedelta(hours=1))
    _, report = _import(
        tmp_path,
        f"event_id,source,customer_ref,metric,timestamp\nn1,,acct-1,api_calls,{ts}\n".encode(),
    )
    assert report[0]["code"] == "missing_field" and "csv:usage.csv" in report[0]["message"]
    assert RejectedEvent.objects.get().source == "csv:usage.csv"
    assert IngestTally.objects.get().source == "csv:usage.csv"


def test_the_header_is_checked_before_the_file_is_queued(
    clerk: User, settings: Settings, tmp_path: Path, now: datetime
) -> None:
    settings.MEDIA_ROOT = tmp_path
    c = login(clerk)
    template = c.get("/metering/imports/template.csv")
    assert template.status_code == 200
    assert template.content.decode().startswith(
        "event_id,source,customer_ref,metric,timestamp,value,properties"
    )
    page = c.post(
        "/metering/imports/",
        {"file": SimpleUploadedFile("u.csv", b"event_id,source\n1,app\n")},
        follow=True,
    )
    assert b"lacks the column(s) customer_ref, metric, timestamp" in page.content
    assert b"event_id,source,customer_ref,metric,timestamp" in page.content
    assert not ImportJob.objects.exists()
    not_utf8 = c.post(
        "/metering/imports/",
        {
            "file": SimpleUploadedFile(
                "u.csv",
                "event_id,source,customer_ref,metric,timestamp\nx,app,m\xfc,a,b\n".encode(
                    "latin-1"
                ),
            )
        },
        follow=True,
    )
    assert b"Line 2 is not utf-8" in not_utf8.content and not ImportJob.objects.exists()
    extra = "event_id,source,customer_ref,metric,timestamp,colour\n".encode()
    c.post("/metering/imports/", {"file": SimpleUploadedFile("u.csv", extra)})
    assert "colour" in ImportJob.objects.get().message
