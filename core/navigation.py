"""The main menu by role (issue 15, item 8): each role's menu shows what it works on.

  finance_clerk      the exception queue, usage, invoices, receivables
  finance_approver   approvals, invoices, receivables, the audit trail
  integration_admin  billing runs and their history, usage imports, mappings, plans,
                     contracts, ERP postings, the admin site
  auditor            everything, read-only (the pages themselves refuse what it may not do)

Someone with several roles gets the union, in the order of MENU. Items name URL names,
not views, so core imports no other app; `config` routes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from core.roles import AUDITOR, FINANCE_APPROVER, FINANCE_CLERK, INTEGRATION_ADMIN

CLERK, APPROVER, ADMIN = FINANCE_CLERK, FINANCE_APPROVER, INTEGRATION_ADMIN


@dataclass(frozen=True)
class MenuItem:
    label: str
    url_name: str
    roles: tuple[str, ...]
    query: str = ""


#: The whole menu in display order; each item lists the roles whose menu shows it.
MENU: tuple[MenuItem, ...] = (
    MenuItem("Exception queue", "exceptions:queue", (CLERK, ADMIN, AUDITOR)),
    MenuItem("Approvals", "exceptions:queue", (APPROVER,), query="view=awaiting_my_approval"),
    MenuItem("Usage", "metering:control-totals", (CLERK, AUDITOR)),
    MenuItem("Invoices", "billing:invoices", (CLERK, APPROVER, AUDITOR)),
    MenuItem("Receivables", "billing:receivables", (CLERK, APPROVER, AUDITOR)),
    MenuItem("Billing runs", "billing:runs", (ADMIN, AUDITOR)),
    MenuItem("Run history", "billing:run_history", (ADMIN, AUDITOR)),
    MenuItem("Usage imports", "metering:imports", (ADMIN,)),
    MenuItem("Mappings", "admin:metering_customermapping_changelist", (ADMIN,)),
    # the application's pages (editors for the integrator, read-only for the auditor)
    MenuItem("Plans", "billing:plans", (ADMIN, AUDITOR)),
    MenuItem("Contracts", "billing:contracts", (ADMIN, AUDITOR)),
    MenuItem("ERP", "erp_sync:postings", (ADMIN, APPROVER, AUDITOR)),
    MenuItem("Audit trail", "exceptions:audit", (APPROVER, AUDITOR)),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str


def menu_for(roles: set[str]) -> list[NavLink]:
    """The menu of someone holding `roles` (empty without a role)."""
    links = []
    for item in MENU:
        if roles & set(item.roles):
            url = reverse(item.url_name)
            links.append(NavLink(item.label, f"{url}?{item.query}" if item.query else url))
    return links
