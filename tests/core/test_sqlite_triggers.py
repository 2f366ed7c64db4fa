"""SQLite's triggers survive table rebuilds (core.dbtriggers, decision 55).

The quick start runs on SQLite, where Django alters a table by rebuilding it without its
triggers; CI runs on PostgreSQL. So this test migrates a fresh SQLite database of its own in a
subprocess, whatever database the suite runs on.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from core.dbtriggers import SQLITE_TRIGGERS

ROOT = Path(__file__).resolve().parents[2]


def _migrate(db: Path) -> None:
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _triggers(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        return {name: sql for name, sql in rows}


def test_a_fresh_sqlite_database_has_exactly_the_declared_triggers_and_a_lost_one_comes_back(
    tmp_path: Path,
) -> None:
    db = tmp_path / "quickstart.sqlite3"
    _migrate(db)
    declared = {name for triggers in SQLITE_TRIGGERS.values() for name in triggers}
    # the reference-generation bumps of metering and the case counters of exceptions
    assert len(declared) == 12
    assert set(_triggers(db)) == declared

    # what a table rebuild does to a table's triggers: the next migrate puts them back
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER metering_metricversion_reference_bump_update")
        conn.execute("DROP TRIGGER exceptions_casecount_ins")
    assert "exceptions_casecount_ins" not in _triggers(db)
    _migrate(db)
    assert set(_triggers(db)) == declared

    # each one as declared, word for word (the fresh ones were written by the migrations)
    for triggers in SQLITE_TRIGGERS.values():
        for name, (_, definition) in triggers.items():
            assert _normalized(_triggers(db)[name]) == _normalized(
                f"CREATE TRIGGER {name} {definition}"
            ), name


def _normalized(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())
