"""Who made a change: the actor every service takes and every audit entry names.

It lives in `core`, the bottom layer, so any app (core included) can name an
actor without importing the audit trail that records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models


class ActorKind(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    TASK = "task", "Task"
    SYSTEM = "system", "System"


@dataclass(frozen=True)
class Actor:
    """A person, an API key, a task or the system itself."""

    kind: str
    label: str
    user_id: int | None = None
    api_key_id: int | None = None

    @classmethod
    def for_user(cls, user: Any) -> Actor:
        return cls(kind=ActorKind.USER, label=user.get_username(), user_id=user.pk)

    @classmethod
    def for_api_key(cls, api_key: Any) -> Actor:
        return cls(
            kind=ActorKind.API_KEY,
            label=f"{api_key.name} ({api_key.prefix})",
            api_key_id=api_key.pk,
        )

    @classmethod
    def for_task(cls, name: str) -> Actor:
        return cls(kind=ActorKind.TASK, label=name)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(kind=ActorKind.SYSTEM, label=label)

    @classmethod
    def for_request(cls, request: Any) -> Actor:
        """The actor of a web or API request (API key if the request carries one)."""
        auth = getattr(request, "auth", None)
        if auth is not None and hasattr(auth, "prefix"):
            return cls.for_api_key(auth)
        return cls.for_user(request.user)
