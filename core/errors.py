"""One application error type. Each app lists its stable codes in error_codes.py.

A code is a promise to API clients: never rename one.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A refused operation, with a stable `code`, a message a person understands and `extra`."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str,
        extra: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
        if status is not None:
            self.status_code = status

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "extra": self.extra}


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class PermissionDenied(AppError):
    status_code = 403
