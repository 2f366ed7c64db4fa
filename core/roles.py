"""The four roles, as Django groups, and the server-side checks that use them.

finance_clerk     works the exception queue, proposes corrections
finance_approver  approves or rejects corrections and reversals
integration_admin contracts, price plans, mappings, ERP connections (admin site)
auditor           reads everything, the audit trail included, changes nothing
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, PermissionsMixin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

FINANCE_CLERK = "finance_clerk"
FINANCE_APPROVER = "finance_approver"
INTEGRATION_ADMIN = "integration_admin"
AUDITOR = "auditor"
ALL_ROLES = (FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN, AUDITOR)

# Apps whose models an integration admin may change in the admin site.
ADMIN_MANAGED_APPS = ("core", "metering", "billing", "erp_sync")
# Apps an auditor may view (everything of ours, plus users and groups).
AUDITED_APPS = ("core", "exceptions", "metering", "billing", "erp_sync", "auth", "django_q")
# Models nobody changes through the admin: the trail and key material.
READ_ONLY_MODELS = {("exceptions", "auditentry"), ("exceptions", "auditchainhead")}


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated or not isinstance(user, PermissionsMixin):
        return set()
    cached: set[str] | None = getattr(user, "_ledgerline_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        if user.is_superuser:
            cached |= set(ALL_ROLES)
        # Kept on the user object, which lives for one request: one query per request.
        setattr(user, "_ledgerline_roles", cached)
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    """True when the user holds any of `roles` (a superuser holds them all)."""
    return bool(user_roles(user) & set(roles))


def sync_role_permissions(**kwargs: Any) -> None:
    """Create the role groups and give them their model permissions (idempotent)."""
    from django.contrib.auth.models import Group, Permission

    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ALL_ROLES}

    perms = Permission.objects.select_related("content_type")
    admin_perms = [
        p
        for p in perms
        if p.content_type.app_label in ADMIN_MANAGED_APPS
        and (p.content_type.app_label, p.content_type.model) not in READ_ONLY_MODELS
    ]
    view_perms = [
        p
        for p in perms
        if p.codename.startswith("view_") and p.content_type.app_label in AUDITED_APPS
    ]
    groups[INTEGRATION_ADMIN].permissions.set(admin_perms)
    groups[AUDITOR].permissions.set(view_perms)
    # Clerks and approvers work in Ledgerline's own pages, not the admin site.
    groups[FINANCE_CLERK].permissions.set([])
    groups[FINANCE_APPROVER].permissions.set([])


P = ParamSpec("P")
R = TypeVar("R")
View = Callable[Concatenate[HttpRequest, P], R]


def role_required(*roles: str) -> Callable[[View[P, R]], View[P, R]]:
    """View decorator: the user must hold one of `roles`, checked on the server (403 otherwise)."""

    def decorator(view: View[P, R]) -> View[P, R]:
        @wraps(view)
        def wrapped(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
