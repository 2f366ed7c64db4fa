"""Settings come from the environment and refuse unsafe production setups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DEBUG",
            "DJANGO_SETTINGS_MODULE",
            "SECURE_SSL_REDIRECT",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_secret_key_is_refused_with_debug_off(tmp_path: Path) -> None:
    result = _manage("check", DEBUG="0", LEDGERLINE_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_development_generates_and_keeps_a_secret_key(tmp_path: Path) -> None:
    assert _manage("check", DEBUG="1", LEDGERLINE_VAR_DIR=str(tmp_path)).returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) > 40
    assert _manage("check", DEBUG="1", LEDGERLINE_VAR_DIR=str(tmp_path)).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key


def test_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="k" * 20 + "-Zq8#pL2@vR5!xW9$mN3^bT7&cY1*hJ6(",
        ALLOWED_HOSTS="ledgerline.example.com",
        LEDGERLINE_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_bad_boolean_is_explained(tmp_path: Path) -> None:
    result = _manage("check", DEBUG="maybe", LEDGERLINE_VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


PROBE = """
from django.test import Client
c = Client()
for path in ("/healthz", "/readyz", "/accounts/login/"):
    r = c.get(path)
    print("PROBE", path, r.status_code, r.headers.get("Location", "-"))
"""


def test_probes_answer_over_plain_http_under_production_settings(tmp_path: Path) -> None:
    """Behind a TLS-terminating proxy every page redirects to https, but not the probes."""
    result = _manage(
        "shell",
        "-c",
        PROBE,
        DEBUG="0",
        SECRET_KEY="k" * 20 + "-Zq8#pL2@vR5!xW9$mN3^bT7&cY1*hJ6(",
        ALLOWED_HOSTS="testserver",
        LEDGERLINE_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    seen = {
        line.split()[1]: line.split()[2:]
        for line in result.stdout.splitlines()
        if line.startswith("PROBE ")
    }
    assert seen["/healthz"] == ["200", "-"]
    # not migrated: not ready, but answered over HTTP rather than redirected
    assert seen["/readyz"] == ["503", "-"]
    assert seen["/accounts/login/"] == ["301", "https://testserver/accounts/login/"]
