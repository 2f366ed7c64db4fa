from __future__ import annotations

from django.http import HttpRequest

from core.navigation import menu_for
from core.roles import ALL_ROLES, user_roles


def roles(request: HttpRequest) -> dict[str, object]:
    """`roles` in every template: the set of role names the user holds, and `nav_items`: the
    main menu of those roles (core.navigation)."""
    held = user_roles(request.user) if hasattr(request, "user") else set()
    return {"roles": held, "role_names": ALL_ROLES, "nav_items": menu_for(held)}
