"""Exceptions' SQLite triggers as they must be now (core.dbtriggers re-creates missing ones).

The open-case counters per kind and status follow every insert, delete and change of kind or
status (migration 0006; PostgreSQL counts per statement since 0010).
"""

_T = "exceptions_exceptioncase"
_C = "exceptions_casecount"
_UP = (
    f"INSERT INTO {_C} (kind, status, n) VALUES (NEW.kind, NEW.status, 1) "
    "ON CONFLICT (kind, status) DO UPDATE SET n = n + 1;"
)
_DOWN = f"UPDATE {_C} SET n = n - 1 WHERE kind = OLD.kind AND status = OLD.status;"

SQLITE_TRIGGERS = {
    f"{_C}_ins": (_T, f"AFTER INSERT ON {_T} BEGIN {_UP} END"),
    f"{_C}_del": (_T, f"AFTER DELETE ON {_T} BEGIN {_DOWN} END"),
    f"{_C}_upd": (
        _T,
        f"AFTER UPDATE OF kind, status ON {_T} "
        f"WHEN NEW.kind IS NOT OLD.kind OR NEW.status IS NOT OLD.status BEGIN {_DOWN} {_UP} END",
    ),
}
