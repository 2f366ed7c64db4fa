"""Demo ERP connections: one Tryton company per demo legal entity (scripts/tryton.sh prepare
creates them, see erp/tryton/prepare_db.py), with the accounts of Tryton's minimal English
chart mapped. The end-to-end tests use the same mappings."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.actors import Actor
from core.models import LegalEntity
from erp_sync.models import AccountRole, ErpConnection, Posting
from erp_sync.services import account_mapping_set, connection_create

#: core/demo.py's legal entities -> the Tryton company of each (prepare_db.COMPANIES).
TRYTON_COMPANIES = {
    "ll-us": "Ledgerline Inc.",
    "ll-de": "Ledgerline GmbH",
    "ll-jp": "Ledgerline K.K.",
    "ll-bh": "Ledgerline Gulf W.L.L.",
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
    """The entity's Tryton connection, created with every demo mapping but those in `skip`
    (an existing connection is returned as it is: mappings added by hand are kept)."""
    with transaction.atomic():
        name = f"tryton-{legal_entity.code}"
        conn = ErpConnection.objects.filter(legal_entity=legal_entity, name=name).first()
        if conn is not None:
            return conn
        if conn is None:
            conn = connection_create(
                legal_entity=legal_entity,
                actor=actor,
                name=name,
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


# --------------------------------------------------------------------------- the demo's ERP side


@dataclass
class DemoErpResult:
    connections: list[str] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    entries: int = 0
    postings: int = 0
    warnings: list[str] = field(default_factory=list)


#: The demo's staged failures (README, "ERP: what to look at").
UNMAPPED_ENTITY = "ll-de"  # its default revenue account is left unmapped
CLOSED_PERIOD_ENTITY = "ll-jp"  # its Tryton period of the issue date is closed


def load_demo_erp(
    *,
    tryton_url: str,
    database: str,
    login: str,
    admin_password: str | None,
    now: datetime.datetime | None = None,
) -> DemoErpResult:
    """Tryton connections for the demo entities, last month's drafts finalized, a credit memo,
    a void and a payment in the US, the ledger written and its postings queued; staged: the
    German default revenue account unmapped, the Japanese period closed in Tryton (needs the
    Tryton admin password). Idempotent."""
    from billing import services as billing
    from billing.models import Invoice, InvoiceStatus
    from erp_sync.services import ledger_consume

    actor = Actor.system("demo")
    now = now or timezone.now()
    result = DemoErpResult()
    for entity in LegalEntity.objects.filter(code__in=TRYTON_COMPANIES).order_by("code"):
        skip = ((AccountRole.REVENUE, ""),) if entity.code == UNMAPPED_ENTITY else ()
        conn = tryton_connection(
            legal_entity=entity,
            actor=actor,
            base_url=tryton_url,
            database=database,
            login=login,
            skip=skip,
        )
        result.connections.append(f"{entity.code} -> Tryton company {conn.company!r}")
    if UNMAPPED_ENTITY in TRYTON_COMPANIES:
        result.staged.append(
            f"{UNMAPPED_ENTITY}: default revenue account not mapped (missing_gl_mapping case)"
        )

    # Last month's drafts of every entity finalized: the whole month goes to the ERP.
    drafts = list(
        Invoice.objects.filter(status=InvoiceStatus.DRAFT, billing_run__isnull=False).values_list(
            "pk", flat=True
        )
    )
    if drafts:
        billing.invoices_finalize(invoice_ids=drafts, actor=actor)
    us = {
        inv.customer.code: inv
        for inv in Invoice.objects.filter(
            legal_entity__code="ll-us", kind="invoice"
        ).select_related("customer")
    }
    acme, initech, globex = us.get("acme"), us.get("initech"), us.get("globex")
    if (
        acme is not None
        and acme.status == InvoiceStatus.FINALIZED
        and not acme.corrections.exists()
    ):
        billing.credit_memo_issue(invoice=acme, reason="Demo: goodwill credit", actor=actor)
        result.staged.append(f"credit memo for {acme.number} (acme)")
    if initech is not None and initech.status == InvoiceStatus.FINALIZED:
        billing.invoice_void(
            invoice=initech, reason="Demo: issued to the wrong entity", actor=actor
        )
        result.staged.append(f"void of {initech.number} (initech)")
    if globex is not None and globex.status == InvoiceStatus.FINALIZED:
        billing.invoice_mark_paid(invoice=globex, actor=actor)
        result.staged.append(f"payment of {globex.number} (globex)")

    if admin_password is not None:
        try:
            closed = close_tryton_period(
                tryton_url=tryton_url,
                database=database,
                admin_password=admin_password,
                company=TRYTON_COMPANIES[CLOSED_PERIOD_ENTITY],
                day=_local_today(CLOSED_PERIOD_ENTITY, now),
            )
            result.staged.append(
                f"{CLOSED_PERIOD_ENTITY}: Tryton period {closed} closed (posting_failed case)"
            )
        except Exception as exc:  # noqa: BLE001 - the demo goes on without this staged failure
            result.warnings.append(f"could not close the {CLOSED_PERIOD_ENTITY} period: {exc}")

    consumed = ledger_consume(actor=actor)
    result.entries = consumed.entries
    result.postings = Posting.objects.count()
    return result


def _local_today(entity_code: str, now: datetime.datetime) -> datetime.date:
    from billing.periods import local_date_of

    entity = LegalEntity.objects.get(code=entity_code)
    return local_date_of(ts=now, tz=entity.timezone)


def close_tryton_period(
    *, tryton_url: str, database: str, admin_password: str, company: str, day: datetime.date
) -> str:
    """Close the standard period holding `day` in the company (as finance would in Tryton)."""
    from erp_sync.tryton_rpc import TrytonClient

    admin = TrytonClient(tryton_url, database, "admin", admin_password)
    admin.login()
    (company_id,) = admin.call(
        "model.company.company.search", [("party.name", "=", company)], 0, None, None
    )
    (period,) = admin.call(
        "model.account.period.search_read",
        [
            ("company", "=", company_id),
            ("type", "=", "standard"),
            ("start_date", "<=", day),
            ("end_date", ">=", day),
        ],
        0,
        None,
        None,
        ["name", "state"],
    )
    if period["state"] != "closed":
        admin.call("model.account.period.close", [period["id"]])
    return str(period["name"])
