"""A real trytond server for the erp_sync tests: scripts/tryton.sh prepares a
fresh SQLite database in a temporary directory and starts it on a free
loopback port, once per test session."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    def client(
        self, login: str = API_LOGIN, password: str = API_PASSWORD, **kwargs: Any
    ) -> TrytonClient:
        return TrytonClient(self.url, self.database, login, password, **kwargs)


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrytonServer]:
    port = free_port()
    db_dir = tmp_path_factory.mktemp("tryton")
    env = {
        **os.environ,
        "TRYTON_PORT": str(port),
        "TRYTON_DB_DIR": str(db_dir),
        "TRYTON_DB": DATABASE,
        "TRYTON_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TRYTON_API_LOGIN": API_LOGIN,
        "TRYTON_API_PASSWORD": API_PASSWORD,
    }
    started = subprocess.run(
        ["bash", str(TRYTON_SH), "--background"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = f"{started.stdout}\n{started.stderr}".strip()
    if started.returncode == VENV_UNAVAILABLE:
        reason = f".venv-tryton could not be prepared (no package index?):\n{output[-1500:]}"
        if os.environ.get("REQUIRE_TRYTON"):
            pytest.fail(f"REQUIRE_TRYTON is set but {reason}")
        pytest.skip(reason)
    if started.returncode != 0:
        pytest.fail(
            f"scripts/tryton.sh --background failed ({started.returncode}):\n{output[-3000:]}"
        )
    try:
        yield TrytonServer(
            url=f"http://127.0.0.1:{port}", database=DATABASE, db_dir=db_dir, env=env
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
            "model.account.account.search", [("code", "=", code)], 0, None, None
        )
    return found


@pytest.fixture(scope="session")
def misc_journal(api: TrytonClient) -> int:
    (journal,) = api.call("model.account.journal.search", [("code", "=", "MISC")], 0, None, None)
    return int(journal)
