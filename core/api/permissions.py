from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core.error_codes import CoreErrorCode
from core.models import ApiKey


class HasScope(BasePermission):
    """The API key must carry the view's `required_scope` (class attribute).

    A view without `required_scope` is refused: forgetting to name a scope must
    never open an endpoint. Scopes are explicit; `admin` does not imply the others.
    """

    message = "This API key lacks the scope this operation needs."
    code = CoreErrorCode.SCOPE_MISSING

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        scope = getattr(view, "required_scope", None)
        if scope is None:
            return False
        if key.has_scope(scope):
            return True
        self.message = f"This API key lacks the '{scope}' scope this operation needs."
        return False
