"""Reading filters from a page's query string."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date


def date_params(query: Mapping[str, str], *keys: str) -> tuple[dict[str, date | None], list[str]]:
    """The ISO dates under `keys` (None where absent or unreadable) and a message per unreadable one.

    A page shows the messages and filters on what it could read, so a typo
    never silently widens or empties the list without saying why.
    """
    dates: dict[str, date | None] = {}
    errors: list[str] = []
    for key in keys:
        raw = (query.get(key) or "").strip()
        try:
            dates[key] = date.fromisoformat(raw) if raw else None
        except ValueError:
            dates[key] = None
            errors.append(f"'{raw}' is not a date (use YYYY-MM-DD).")
    return dates, errors
