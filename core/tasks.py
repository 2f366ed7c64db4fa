"""django-q2 entry points of core."""

from __future__ import annotations


def ping(value: str) -> str:
    """A no-op task proving the broker carries work to a worker."""
    return f"pong:{value}"
