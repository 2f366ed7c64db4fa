"""The four roles, as Django groups, and the server-side checks that use them.

finance_clerk     works the exception queue, proposes corrections
finance_approver  approves or rejects corrections and reversals
integration_admin contracts, price plans, mappings, ERP connections (admin site)
auditor           reads everything, the audit trail included, changes nothing
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

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
    if not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_ledgerline_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
        if getattr(user, "is_superuser", False):
            cached |= set(ALL_ROLES)
        user._ledgerline_roles = cached  # type: ignore[union-attr]
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


def role_required(*roles: str):  # type: ignore[no-untyped-def]
    """View decorator: the user must hold one of `roles`, checked on the server (403 otherwise)."""
    from functools import wraps

    from django.core.exceptions import PermissionDenied

    def decorator(view):  # type: ignore[no-untyped-def]
        @wraps(view)
        def wrapped(request, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        wrapped.required_roles = roles  # type: ignore[attr-defined]
        return wrapped

    return decorator
