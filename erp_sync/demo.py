"""Demo ERP connections: one Tryton company per demo legal entity (scripts/tryton.sh prepare
creates them, see erp/tryton/prepare_db.py), with the accounts of Tryton's minimal English
chart mapped. The end-to-end tests use the same mappings."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from core.actors import Actor
from core.models import LegalEntity
from erp_sync.models import AccountRole, ErpConnection
from erp_sync.services import account_mapping_set, connection_create

#: core/demo.py's legal entities -> the Tryton company of each (prepare_db.COMPANIES).
TRYTON_COMPANIES = {
    "ll-us": "Ledgerline Inc.",
    "ll-de": "Ledgerline GmbH",
    "ll-jp": "Ledgerline K.K.",
}

#: Our ledger's accounts -> Tryton's minimal English chart (account.account_template_root_en).
TRYTON_MAPPINGS: list[tuple[str, str, str]] = [
    (AccountRole.RECEIVABLE, "", "1.2.1"),  # Accounts, Notes And Loans Receivable
    (AccountRole.REVENUE, "", "4.2.2"),  # Services (recognised over time): fees
    (AccountRole.REVENUE, "api_calls", "4.1.2"),  # Services (point in time): usage
    (AccountRole.TAX_PAYABLE, "", "2.2.3"),  # Accrued Taxes
    (AccountRole.DEFERRED_REVENUE, "", "2.2.2"),  # Deferred Income (Unearned Revenue)
    (AccountRole.CASH_CLEARING, "", "1.1.1"),  # Cash and Cash Equivalents
    (AccountRole.CREDIT_MEMO, "", "4.3.3"),  # Other Adjustments (contra revenue)
]

#: Tryton takes only revenue accounts on invoice lines: fees billed in advance are moved to
#: deferred revenue by a journal posted with the invoice.
TRYTON_OPTIONS = {"defer_by_journal": True, "party_code_prefix": ""}

PASSWORD_ENV = "TRYTON_API_PASSWORD"


def tryton_connection(
    *,
    legal_entity: LegalEntity,
    actor: Actor,
    base_url: str,
    database: str,
    login: str,
    password_env: str = PASSWORD_ENV,
    skip: tuple[tuple[str, str], ...] = (),
    **fields: object,
) -> ErpConnection:
    """The entity's Tryton connection with every demo mapping but those in `skip`."""
    with transaction.atomic():
        conn = ErpConnection.objects.filter(legal_entity=legal_entity, name="tryton").first()
        if conn is None:
            conn = connection_create(
                legal_entity=legal_entity,
                actor=actor,
                name="tryton",
                kind="tryton",
                base_url=base_url,
                database=database,
                company=TRYTON_COMPANIES.get(legal_entity.code, legal_entity.name),
                login=login,
                password_env=password_env,
                options={**TRYTON_OPTIONS},
                **fields,
            )
        for role, key, account in TRYTON_MAPPINGS:
            if (role, key) in skip:
                continue
            account_mapping_set(connection=conn, role=role, key=key, account=account, actor=actor)
    return conn


def demo_tryton_url() -> str:
    return f"http://127.0.0.1:{getattr(settings, 'TRYTON_PORT', None) or 8010}"
