"""A real trytond server for the erp_sync tests, started once per test session on
a free loopback port by scripts/tryton.sh.

Where Tryton keeps its data follows the tests' own database: with a PostgreSQL
DATABASE_URL (or TRYTON_TEST_DB_URI=postgresql://...), Tryton runs on PostgreSQL
in a database of its own, ``<test database>_tryton`` (so helpers and CI jobs
never share one); otherwise on SQLite in a temporary directory.

Preparing a Tryton database takes 30 s to 2 min (account_invoice's activation),
so the prepared database is kept as a template named by a hash of everything
that shapes it (erp/tryton/**, the passwords, the year): PostgreSQL
``ll_tryton_tpl_<hash>`` (each session's database is ``CREATE DATABASE ... TEMPLATE``
of it, about a second, and dropped at the end), SQLite a file under
.venv-tryton/cache/. A change to the Tryton module or to prepare_db.py makes a new
template; beyond the newest four, older ones are dropped."""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from erp_sync.tryton_rpc import TrytonClient

REPO = Path(__file__).resolve().parents[2]
TRYTON_SH = REPO / "scripts" / "tryton.sh"
VENV_UNAVAILABLE = 3  # scripts/tryton.sh: .venv-tryton could not be built
DATABASE = "ledgerline"
ADMIN_PASSWORD = "admin-for-tests-1"
API_LOGIN, API_PASSWORD = "ledgerline", "api-for-tests-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TrytonServer:
    url: str
    database: str
    db_dir: Path
    env: dict[str, str]
    backend: str = "sqlite"

    def client(
        self, login: str = API_LOGIN, password: str = API_PASSWORD, **kwargs: Any
    ) -> TrytonClient:
        return TrytonClient(self.url, self.database, login, password, **kwargs)


def tryton_db_uri() -> tuple[str, str] | None:
    """(trytond URI, database name) when Tryton runs on PostgreSQL in this session."""
    explicit = os.environ.get("TRYTON_TEST_DB_URI", "")
    django_url = os.environ.get("DATABASE_URL", "")
    source = explicit or (django_url if django_url.startswith("postgres") else "")
    if not source:
        return None
    parts = urlsplit(source)
    base = urlsplit(django_url).path.strip("/") if django_url.startswith("postgres") else ""
    name = f"{base or 'll'}_tryton"
    return parts._replace(scheme="postgresql", path="/").geturl(), name


def template_key() -> str:
    """A hash of everything a prepared database depends on."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "erp" / "tryton").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    for value in (ADMIN_PASSWORD, API_LOGIN, API_PASSWORD, str(datetime.date.today().year)):
        digest.update(value.encode())
    return digest.hexdigest()[:12]


def _run_tryton_sh(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", str(TRYTON_SH), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = f"{done.stdout}\n{done.stderr}".strip()
    if done.returncode == VENV_UNAVAILABLE:
        reason = f".venv-tryton could not be prepared (no package index?):\n{output[-1500:]}"
        if os.environ.get("REQUIRE_TRYTON"):
            pytest.fail(f"REQUIRE_TRYTON is set but {reason}")
        pytest.skip(reason)
    if done.returncode != 0:
        pytest.fail(
            f"scripts/tryton.sh {' '.join(args)} failed ({done.returncode}):\n{output[-3000:]}"
        )


def _pg(uri: str):
    import psycopg2

    parts = urlsplit(uri)
    conn = psycopg2.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname="postgres",
    )
    conn.autocommit = True
    return conn


TEMPLATE_PREFIX = "ll_tryton_tpl_"  # shared by every session on this server, whatever its DB
KEPT_TEMPLATES = 4  # the newest prepared templates kept (this session's among them)


def _pg_database_from_template(uri: str, name: str, env: dict[str, str]) -> None:
    """``name`` as a fresh copy of the prepared template, which is made first if missing. An
    advisory lock makes sessions starting at once (two helpers, CI) prepare it only once."""
    template = f"{TEMPLATE_PREFIX}{template_key()}"
    conn = _pg(uri)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", [TEMPLATE_PREFIX])
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY oid DESC",
                [f"{TEMPLATE_PREFIX}%"],
            )
            existing = [row[0] for row in cur.fetchall()]  # newest first
            if template not in existing:
                _run_tryton_sh(["prepare"], {**env, "TRYTON_DB": template})
            # keep a few: worktrees and CI jobs on one server may carry different erp/tryton
            # (each would otherwise drop the others' template and wait minutes for its own)
            for stale in [t for t in existing if t != template][KEPT_TEMPLATES - 1 :]:
                cur.execute(f'DROP DATABASE IF EXISTS "{stale}"')
            _pg_drop(cur, name)
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", [TEMPLATE_PREFIX])
    finally:
        conn.close()


def _pg_drop(cur: Any, name: str) -> None:
    cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _pg_drop_database(uri: str, name: str) -> None:
    conn = _pg(uri)
    try:
        with conn.cursor() as cur:
            _pg_drop(cur, name)
    finally:
        conn.close()


def _sqlite_database_from_template(db_dir: Path, env: dict[str, str]) -> None:
    cache = REPO / ".venv-tryton" / "cache"
    cached = cache / f"{DATABASE}-{template_key()}.sqlite"
    if not cached.exists():
        build_dir = Path(str(db_dir) + "-template")
        _run_tryton_sh(["prepare"], {**env, "TRYTON_DB_DIR": str(build_dir)})
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob(f"{DATABASE}-*.sqlite"):
            stale.unlink()
        partial = cached.with_suffix(".partial")
        shutil.copyfile(build_dir / f"{DATABASE}.sqlite", partial)
        os.replace(partial, cached)
    shutil.copyfile(cached, db_dir / f"{DATABASE}.sqlite")


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    port = free_port()
    db_dir = tmp_path_factory.mktemp("tryton")
    on_pg = tryton_db_uri()
    database = on_pg[1] if on_pg else DATABASE
    env = {
        **os.environ,
        "TRYTON_PORT": str(port),
        "TRYTON_DB_DIR": str(db_dir),
        "TRYTON_DB": database,
        "TRYTON_DB_URI": on_pg[0] if on_pg else "sqlite://",
        "TRYTON_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TRYTON_API_LOGIN": API_LOGIN,
        "TRYTON_API_PASSWORD": API_PASSWORD,
    }
    if on_pg:
        _pg_database_from_template(on_pg[0], database, env)
    else:
        _sqlite_database_from_template(db_dir, env)
    _run_tryton_sh(["--background"], env)
    try:
        yield TrytonServer(
            url=f"http://127.0.0.1:{port}",
            database=database,
            db_dir=db_dir,
            env=env,
            backend="postgresql" if on_pg else "sqlite",
        )
    finally:
        subprocess.run(
            ["bash", str(TRYTON_SH), "stop"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if on_pg:
            _pg_drop_database(on_pg[0], database)


@pytest.fixture(scope="session")
def api(tryton_server: TrytonServer) -> TrytonClient:
    """Logged in as the API user Ledgerline connects as (group Accounting)."""
    client = tryton_server.client()
    client.login()
    return client


@pytest.fixture(scope="session")
def admin(tryton_server: TrytonServer) -> TrytonClient:
    """Logged in as the Tryton administrator (closes periods, as finance would)."""
    client = tryton_server.client("admin", ADMIN_PASSWORD)
    client.login()
    return client


@pytest.fixture(scope="session")
def accounts(api: TrytonClient) -> dict[str, int]:
    """Ids of the accounts of the prepared chart the tests post to, by role."""
    by_code = {
        "receivable": "1.2.1",  # Accounts, Notes And Loans Receivable (party required)
        "revenue": "4.2.2",  # Services
        "cash": "1.1.1",
    }
    found = {}
    for role, code in by_code.items():
        (found[role],) = api.call(
            "model.account.account.search",
            [("code", "=", code), ("company", "=", api.context["company"])],
            0,
            None,
            None,
        )
    return found


@pytest.fixture(scope="session")
def misc_journal(api: TrytonClient) -> int:
    (journal,) = api.call("model.account.journal.search", [("code", "=", "MISC")], 0, None, None)
    return int(journal)


# ------------------------------------------------------------------ a Tryton connection of a world

#: The environment variable the tests' Tryton connections read their password from.
PASSWORD_ENV = "LL_TEST_TRYTON_PASSWORD"


@pytest.fixture
def tryton_conn(tryton_server: TrytonServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``tryton_conn(world, **fields)``: a Tryton connection (erp_sync.demo's, documents
    mode) for the world's legal entity on the session's Tryton, its password in the
    environment, with its own external-id prefix (the Tryton database lives for the whole
    session, so each test's documents stay apart)."""
    from erp_sync.demo import tryton_connection
    from tests.billing.conftest import ACTOR

    monkeypatch.setenv(PASSWORD_ENV, API_PASSWORD)

    def make(world: Any, **fields: Any) -> Any:
        return tryton_connection(
            legal_entity=world.entity,
            actor=ACTOR,
            base_url=tryton_server.url,
            database=tryton_server.database,
            login=API_LOGIN,
            password_env=PASSWORD_ENV,
            external_id_prefix=f"t{uuid.uuid4().hex[:8]}",
            **fields,
        )

    return make


def tryton_company(admin: TrytonClient, conn: Any) -> int:
    """The Tryton company of a connection (named by its party's name)."""
    return int(
        admin.call(
            "model.company.company.search", [("party.name", "=", conn.company)], 0, None, None
        )[0]
    )


def tryton_period_of(admin: TrytonClient, company: int, day: datetime.date) -> int | None:
    """The company's standard period holding ``day``, or None."""
    found = admin.call(
        "model.account.period.search",
        [
            ("company", "=", company),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
            ("type", "=", "standard"),
        ],
        0,
        None,
        None,
    )
    return int(found[0]) if found else None


def tryton_period_reopen(admin: TrytonClient, period: int) -> None:
    """Reopen a period closed by a test, and its journal-periods (Tryton keeps those closed)."""
    admin.call("model.account.period.reopen", [period])
    journal_periods = admin.call(
        "model.account.journal.period.search", [("period", "=", period)], 0, None, None
    )
    if journal_periods:
        admin.call("model.account.journal.period.reopen", journal_periods)


@dataclass(frozen=True)
class ClosedMonth:
    world: Any
    conn: Any
    today: datetime.date
    last_day: datetime.date  # of last month: the documents' date
    period: int


@contextmanager
def last_month_closed_in_tryton(admin: TrytonClient, tryton_conn: Any) -> Iterator[ClosedMonth]:
    """Last month billed and finalized on its last day (so its invoice and journal are dated
    in last month), booked, and last month's period closed in Tryton, as finance closes it;
    reopened (with its journal-periods) on the way out. Skips in a new fiscal year that the
    prepared Tryton has no period for."""
    from django.utils import timezone

    from erp_sync.services import ledger_consume
    from tests.billing.conftest import ACTOR
    from tests.erp_sync.world import billed_world

    today = timezone.now().date()
    last_day = today.replace(day=1) - datetime.timedelta(days=1)
    world = billed_world(
        1,
        month=f"{last_day:%Y-%m}",
        finalize_at=datetime.datetime.combine(last_day, datetime.time(12), tzinfo=datetime.UTC),
    )
    conn = tryton_conn(world)
    ledger_consume(actor=ACTOR)
    period = tryton_period_of(admin, tryton_company(admin, conn), last_day)
    if period is None:
        pytest.skip(f"the prepared Tryton has no period for {last_day} (a new fiscal year)")
    admin.call("model.account.period.close", [period])
    try:
        yield ClosedMonth(world, conn, today, last_day, period)
    finally:
        tryton_period_reopen(admin, period)
