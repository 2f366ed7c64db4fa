"""Prepare the database of Ledgerline's local Tryton server (SQLite or PostgreSQL).

Run with .venv-tryton's python (scripts/tryton.sh does):

    .venv-tryton/bin/python erp/tryton/prepare_db.py [--db-dir var/tryton] [--database ledgerline]
        [--uri postgresql://postgres@127.0.0.1:5432/] [--if-missing]

SQLite (the default, ``--uri sqlite://``): a fresh database is built in a
temporary directory next to the target and moved into place only when complete,
so a file at the target path is always a whole, prepared database.
PostgreSQL (``--uri postgresql://…/``, env TRYTON_DB_URI): a fresh database is
built under ``<name>__building`` and renamed to ``<name>`` only when complete,
for the same reason. Each step checks first and only does what is missing:
running again on a prepared database does nothing (and, once the calendar moves
on, adds the fiscal year that is then missing). ``--if-missing`` returns at once
when the database exists.

What a prepared database holds:
- modules account_invoice and its dependencies, and Ledgerline's own modules
  (erp/tryton/modules: ``ledgerline``, the unique external id; ``ledgerline_sqlite``);
- one company per legal entity of Ledgerline's demo (COMPANIES, the same as
  core/demo.py's ENTITIES), each in its own currency, with its own chart of
  accounts (Tryton's minimal English template), fiscal years for the current
  and the next calendar year in monthly periods, and move and invoice sequences;
- the currencies with their minor units (JPY has none);
- a "Direct" payment term;
- user "admin" (password TRYTON_ADMIN_PASSWORD, default "admin") and the API
  user Ledgerline connects as (TRYTON_API_LOGIN / TRYTON_API_PASSWORD, default
  "ledgerline" / "ledgerline-api"), in group Accounting, member of every
  company, its own company the first (the connector names the company of each
  request in its context).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sqlite3
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

# (legal entity code, company name, currency): core/demo.py's ENTITIES
COMPANIES = [
    ("ll-us", "Ledgerline Inc.", "USD"),
    ("ll-de", "Ledgerline GmbH", "EUR"),
    ("ll-jp", "Ledgerline K.K.", "JPY"),
    ("ll-bh", "Ledgerline Gulf W.L.L.", "BHD"),
]
# code: (name, symbol, rounding, digits)
CURRENCIES = {
    "USD": ("US Dollar", "$", Decimal("0.01"), 2),
    "EUR": ("Euro", "€", Decimal("0.01"), 2),
    "JPY": ("Yen", "¥", Decimal("1"), 0),
    "BHD": ("Bahraini Dinar", "BD", Decimal("0.001"), 3),
}
CHART = "account.account_template_root_en"  # Tryton's minimal chart
MODULES = [
    "account_invoice",
    "ledgerline",  # erp/tryton/modules/ledgerline: the unique external id
    "ledgerline_sqlite",  # erp/tryton/modules/ledgerline_sqlite: SQLite's balance check
]
REPO = Path(__file__).resolve().parents[2]
BUILDING_SUFFIX = "__building"


def log(message: str) -> None:
    print(f"prepare_db: {message}", flush=True)


def is_postgresql(uri: str) -> bool:
    return urlsplit(uri).scheme.startswith("postgres")


def configure(uri: str, db_path: Path | None, config_file: str | None) -> None:
    """Point trytond at the database; must run before trytond.backend is imported."""
    import trytond.config as config

    if config_file:
        config.update_etc(config_file)
    config.set("database", "uri", uri)
    if db_path is not None:
        config.set("database", "path", str(db_path))
    config.set("database", "language", "en")


# --- PostgreSQL housekeeping (psycopg, outside trytond) ------------------------------


def _pg_admin(uri: str):  # type: ignore[no-untyped-def]
    import psycopg

    parts = urlsplit(uri)
    conninfo = parts._replace(scheme="postgresql", path="/postgres").geturl()
    return psycopg.connect(conninfo, autocommit=True)


def pg_exists(uri: str, name: str) -> bool:
    with _pg_admin(uri) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def pg_drop(uri: str, name: str) -> None:
    from psycopg import sql

    with _pg_admin(uri) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def pg_rename(uri: str, old: str, new: str) -> None:
    from psycopg import sql

    with _pg_admin(uri) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [old],
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            )
        )


# --- building -----------------------------------------------------------------------


def create_database(name: str) -> None:
    """An empty Tryton database with ir/res and MODULES (plus dependencies) activated."""
    from sql import Table

    from trytond import __series__, backend
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    database = backend.Database()
    database.connect()
    connection = database.get_connection(autocommit=True)
    try:
        database.create(connection, name)
    finally:
        database.put_connection(connection)
        database.close()

    database = backend.Database(name)
    connection = database.get_connection()
    try:
        with connection.cursor() as cursor:
            database.init()
            ir_configuration = Table("ir_configuration")
            cursor.execute(*ir_configuration.insert([ir_configuration.language], [["en"]]))
        connection.commit()
    finally:
        database.put_connection(connection)

    pool = Pool(name)
    pool.init(update=["ir", "res", *MODULES], lang=["en"], activatedeps=True)
    with Transaction().start(name, 0):
        Lang = pool.get("ir.lang")
        Lang.write(Lang.search([("code", "=", "en")]), {"translatable": True})
        # as trytond-admin does for a new database: records the series it was built with
        Configuration = pool.get("ir.configuration")
        configuration = Configuration(1)
        configuration.series = __series__
        configuration.save()
        # trytond-admin creates the administrator of a new database; so do we
        User = pool.get("res.user")
        User.create([{"login": "admin", "name": "Administrator", "administrator": True}])


def close_database(name: str) -> None:
    """Close trytond's connections to ``name`` (PostgreSQL: before it is renamed)."""
    from trytond import backend

    backend.Database(name).close()


def set_password_hash(name: str, login: str, password: str) -> None:
    """Store the hash directly: Tryton's policy refuses a password equal to the
    login, and the demo's documented default is admin/admin on loopback."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    with Transaction().start(name, 0):
        User = Pool(name).get("res.user")
        (user,) = User.search([("login", "=", login)])
        User.write([user], {"password_hash": User.hash_password(password)})


def ensure_modules(config) -> None:  # type: ignore[no-untyped-def]
    """A database prepared before a module joined MODULES gets it activated."""
    from proteus import Model, Wizard

    Module = Model.get("ir.module", config=config)
    missing = Module.find([("name", "in", MODULES), ("state", "!=", "activated")])
    if not missing:
        log("modules activated")
        return
    Module.click(missing, "activate")
    Wizard("ir.module.activate_upgrade", config=config).execute("upgrade")
    log(f"activated modules {', '.join(m.name for m in missing)}")


def ensure_currency(config, code: str):  # type: ignore[no-untyped-def]
    from proteus import Model

    Currency = Model.get("currency.currency", config=config)
    found = Currency.find([("code", "=", code)])
    if found:
        return found[0]
    name, symbol, rounding, digits = CURRENCIES[code]
    currency = Currency(name=name, symbol=symbol, code=code, rounding=rounding, digits=digits)
    currency.save()
    log(f"created currency {code} (rounding {rounding})")
    return currency


def use_company(config, company) -> None:  # type: ignore[no-untyped-def]
    """Make ``company`` the admin's current company (proteus' context follows)."""
    from proteus import Model

    User = Model.get("res.user", config=config)
    (admin,) = User.find([("login", "=", "admin")])
    if admin.company != company:
        User.write([admin.id], {"company": company.id}, config.context)
    config._context = User.get_preferences(True, {})


def ensure_companies(config) -> list:  # type: ignore[no-untyped-def]
    """One company per legal entity, in its currency; the admin is in all of them."""
    from proteus import Model

    Company = Model.get("company.company", config=config)
    Party = Model.get("party.party", config=config)
    User = Model.get("res.user", config=config)
    companies = []
    for _entity, name, currency_code in COMPANIES:
        found = Company.find([("party.name", "=", name)])
        if found:
            companies.append(found[0])
            log(f"company {name!r} exists")
            continue
        currency = ensure_currency(config, currency_code)
        party = Party(name=name)
        party.save()
        company = Company(party=party, currency=currency)
        company.save()
        companies.append(company)
        log(f"created company {name!r} ({currency_code})")
    (admin,) = User.find([("login", "=", "admin")])
    User.write(
        [admin.id],
        {
            "companies": [["add", [c.id for c in companies]]],
            "company": admin.company.id if admin.company else companies[0].id,
            "company_filter": "all",
        },
        config.context,
    )
    config._context = User.get_preferences(True, {})
    return companies


def ensure_chart(config, company) -> None:  # type: ignore[no-untyped-def]
    from proteus import Model
    from trytond.modules.account.tests.tools import create_chart

    Account = Model.get("account.account", config=config)
    if Account.find([("company", "=", company.id)], limit=1):
        log(f"{company.rec_name}: chart of accounts exists")
        return
    create_chart(company=company, chart=CHART, config=config)
    log(f"{company.rec_name}: created chart of accounts from {CHART}")


def ensure_fiscal_years(config, company, years: list[int]) -> None:  # type: ignore[no-untyped-def]
    from proteus import Model
    from trytond.modules.account.tests.tools import create_fiscalyear
    from trytond.modules.account_invoice.tests.tools import set_fiscalyear_invoice_sequences

    FiscalYear = Model.get("account.fiscalyear", config=config)
    for year in years:
        start, end = datetime.date(year, 1, 1), datetime.date(year, 12, 31)
        if FiscalYear.find(
            [("company", "=", company.id), ("start_date", "<=", end), ("end_date", ">=", start)]
        ):
            log(f"{company.rec_name}: fiscal year {year} exists")
            continue
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company=company, today=(start, end), config=config), config=config
        )
        fiscalyear.save()
        fiscalyear.click("create_period")
        log(
            f"{company.rec_name}: created fiscal year {year} "
            f"with {len(fiscalyear.periods)} monthly periods"
        )


def ensure_payment_term(config) -> None:  # type: ignore[no-untyped-def]
    from proteus import Model

    PaymentTerm = Model.get("account.invoice.payment_term", config=config)
    if PaymentTerm.find([("name", "=", "Direct")]):
        log("payment term 'Direct' exists")
        return
    term = PaymentTerm(name="Direct")
    term.lines.new(type="remainder")
    term.save()
    log("created payment term 'Direct'")


def ensure_api_user(config, companies, login: str, password: str) -> bool:  # type: ignore[no-untyped-def]
    """True when the user was created (its password is set afterwards). Member of
    every company, company filter "all": the connector's context names the
    company each request is for."""
    from proteus import Model

    User = Model.get("res.user", config=config)
    Group = Model.get("res.group", config=config)
    ModelData = Model.get("ir.model.data", config=config)
    found = User.find([("login", "=", login)])
    created = not found
    if created:
        user = User(name="Ledgerline API", login=login)
        user.groups.append(Group(ModelData.get_id("account.group_account", config.context)))
        user.save()
        log(f"created API user {login!r} (group Accounting)")
    else:
        (user,) = found
    User.write(
        [user.id],
        {
            "companies": [["add", [c.id for c in companies]]],
            "company": user.company.id if user.company else companies[0].id,
            "company_filter": "all",
        },
        config.context,
    )
    log(f"API user {login!r} in companies {', '.join(c.rec_name for c in companies)}")
    return created


def publish_sqlite(built: Path, target: Path) -> None:
    """Move the finished database into place in one step. trytond runs SQLite in
    WAL mode, so committed pages may still sit in the -wal file: copy through
    SQLite's backup API (which includes them), then rename atomically."""
    partial = target.with_name(f".{target.name}.partial")
    source, copy = sqlite3.connect(built), sqlite3.connect(partial)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    os.replace(partial, target)


def build(name: str, fresh: bool) -> None:
    """Every step on database ``name`` (configured already)."""
    admin_password = os.environ.get("TRYTON_ADMIN_PASSWORD", "admin")
    api_login = os.environ.get("TRYTON_API_LOGIN", "ledgerline")
    api_password = os.environ.get("TRYTON_API_PASSWORD", "ledgerline-api")
    this_year = datetime.date.today().year
    if fresh:
        log(f"creating database {name!r} (modules: {', '.join(MODULES)} and dependencies)")
        create_database(name)
        set_password_hash(name, "admin", admin_password)
        log("set the admin password (TRYTON_ADMIN_PASSWORD)")

    from proteus import config as pconfig

    config = pconfig.set_trytond(database=name, user="admin")
    if not fresh:
        ensure_modules(config)
    companies = ensure_companies(config)
    for company in companies:
        use_company(config, company)
        ensure_chart(config, company)
        ensure_fiscal_years(config, company, [this_year, this_year + 1])
    use_company(config, companies[0])
    ensure_payment_term(config)
    if ensure_api_user(config, companies, api_login, api_password):
        set_password_hash(name, api_login, api_password)


def prepare(
    uri: str, db_dir: Path, name: str, config_file: str | None, *, if_missing: bool = False
) -> None:
    if is_postgresql(uri):
        fresh = not pg_exists(uri, name)
        if not fresh and if_missing:
            log(f"database {name!r} exists")
            return
        configure(uri, None, config_file)
        if not fresh:
            log(f"database {name!r} exists; checking each step")
            build(name, fresh=False)
            log("done")
            return
        building = f"{name}{BUILDING_SUFFIX}"
        pg_drop(uri, building)  # what a killed earlier run left
        try:
            build(building, fresh=True)
            close_database(building)
            pg_rename(uri, building, name)
        except BaseException:
            pg_drop(uri, building)
            raise
        log(f"database ready: {name!r} on {urlsplit(uri).netloc}")
        return

    target = db_dir / f"{name}.sqlite"
    db_dir.mkdir(parents=True, exist_ok=True)
    fresh = not target.exists()
    if not fresh and if_missing:
        log(f"database {target} exists")
        return
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=db_dir)) if fresh else db_dir
    try:
        configure(uri, work, config_file)
        if not fresh:
            log(f"database {target} exists; checking each step")
        build(name, fresh=fresh)
        if fresh:
            publish_sqlite(work / f"{name}.sqlite", target)
            log(f"database ready: {target}")
        else:
            log("done")
    finally:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--uri",
        default=os.environ.get("TRYTON_DB_URI") or "sqlite://",
        help="trytond database URI: sqlite:// or postgresql://user@host:port/ "
        "(env TRYTON_DB_URI; default sqlite://)",
    )
    parser.add_argument(
        "--db-dir",
        default=os.environ.get("TRYTON_DB_DIR", str(REPO / "var" / "tryton")),
        help="SQLite: directory of the file (env TRYTON_DB_DIR; default var/tryton)",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("TRYTON_DB", "ledgerline"),
        help="database name; SQLite: the file is <db-dir>/<name>.sqlite (env TRYTON_DB)",
    )
    parser.add_argument("--config", default=None, help="trytond.conf to read first (optional)")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when the database exists"
    )
    args = parser.parse_args(argv)
    prepare(
        args.uri,
        Path(args.db_dir).resolve(),
        args.database,
        args.config,
        if_missing=args.if_missing,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
