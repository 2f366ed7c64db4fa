"""Prepare the SQLite database of Ledgerline's local Tryton server.

Run with .venv-tryton's python (scripts/tryton.sh does):

    .venv-tryton/bin/python erp/tryton/prepare_db.py [--db-dir var/tryton] [--database ledgerline]

A fresh database is built in a temporary directory next to the target and
moved into place only when complete, so a file at the target path is always a
whole, prepared database. Each step checks first and only does what is
missing: running again on a prepared database does nothing (and, once the
calendar moves on, adds the fiscal year that is then missing).

What a prepared database holds:
- modules account_invoice and its dependencies activated;
- company "Ledgerline Inc." in USD;
- a chart of accounts from Tryton's minimal template;
- fiscal years for the current and the next calendar year, monthly periods,
  move and invoice sequences;
- a "Direct" payment term;
- user "admin" (password TRYTON_ADMIN_PASSWORD, default "admin") and the API
  user Ledgerline connects as (TRYTON_API_LOGIN / TRYTON_API_PASSWORD,
  default "ledgerline" / "ledgerline-api"), in group Accounting.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

COMPANY_NAME = "Ledgerline Inc."
COMPANY_CURRENCY = "USD"
CHART = "account.account_template_root_en"  # Tryton's minimal chart
MODULES = [
    "account_invoice",
    "ledgerline_sqlite",
]  # the latter: erp/tryton/modules, see its move.py
REPO = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"prepare_db: {message}", flush=True)


def configure(db_path: Path, config_file: str | None) -> None:
    """Point trytond at SQLite files in db_path; must run before trytond.backend is imported."""
    import trytond.config as config

    if config_file:
        config.update_etc(config_file)
    config.set("database", "uri", "sqlite://")
    config.set("database", "path", str(db_path))
    config.set("database", "language", "en")


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


def set_password_hash(name: str, login: str, password: str) -> None:
    """Store the hash directly: Tryton's policy refuses a password equal to the
    login, and the demo's documented default is admin/admin on loopback."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    with Transaction().start(name, 0):
        User = Pool(name).get("res.user")
        (user,) = User.search([("login", "=", login)])
        User.write([user], {"password_hash": User.hash_password(password)})


def ensure_company(config):  # type: ignore[no-untyped-def]
    from proteus import Model
    from trytond.modules.company.tests.tools import create_company, get_company

    Company = Model.get("company.company", config=config)
    if Company.find([]):
        company = get_company(config=config)
        log(f"company {company.rec_name!r} exists")
        # proteus' context must carry the company for the steps after this one
        User = Model.get("res.user", config=config)
        config._context = User.get_preferences(True, {})
        return company
    Party = Model.get("party.party", config=config)
    party = Party(name=COMPANY_NAME)
    party.save()
    create_company(party=party, currency=COMPANY_CURRENCY, config=config)
    company = get_company(config=config)
    log(f"created company {COMPANY_NAME!r} ({COMPANY_CURRENCY})")
    return company


def ensure_chart(config, company) -> None:  # type: ignore[no-untyped-def]
    from proteus import Model
    from trytond.modules.account.tests.tools import create_chart

    Account = Model.get("account.account", config=config)
    if Account.find([("company", "=", company.id)], limit=1):
        log("chart of accounts exists")
        return
    create_chart(company=company, chart=CHART, config=config)
    log(f"created chart of accounts from {CHART}")


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
            log(f"fiscal year {year} exists")
            continue
        fiscalyear = set_fiscalyear_invoice_sequences(
            create_fiscalyear(company=company, today=(start, end), config=config), config=config
        )
        fiscalyear.save()
        fiscalyear.click("create_period")
        log(f"created fiscal year {year} with {len(fiscalyear.periods)} monthly periods")


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


def ensure_api_user(config, company, login: str, password: str) -> bool:  # type: ignore[no-untyped-def]
    """True when the user was created (its password is set afterwards)."""
    from proteus import Model

    User = Model.get("res.user", config=config)
    Group = Model.get("res.group", config=config)
    ModelData = Model.get("ir.model.data", config=config)
    if User.find([("login", "=", login)]):
        log(f"API user {login!r} exists")
        return False
    user = User(name="Ledgerline API", login=login)
    user.companies.append(company)
    user.company = company
    user.groups.append(Group(ModelData.get_id("account.group_account", config.context)))
    user.save()
    log(f"created API user {login!r} (group Accounting, company {COMPANY_NAME!r})")
    return True


def publish(built: Path, target: Path) -> None:
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


def prepare(db_dir: Path, name: str, config_file: str | None) -> None:
    target = db_dir / f"{name}.sqlite"
    admin_password = os.environ.get("TRYTON_ADMIN_PASSWORD", "admin")
    api_login = os.environ.get("TRYTON_API_LOGIN", "ledgerline")
    api_password = os.environ.get("TRYTON_API_PASSWORD", "ledgerline-api")
    this_year = datetime.date.today().year

    db_dir.mkdir(parents=True, exist_ok=True)
    fresh = not target.exists()
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=db_dir)) if fresh else db_dir
    try:
        configure(work, config_file)
        if fresh:
            log(f"creating database {name!r} (modules: {', '.join(MODULES)} and dependencies)")
            create_database(name)
            set_password_hash(name, "admin", admin_password)
            log("set the admin password (TRYTON_ADMIN_PASSWORD)")
        else:
            log(f"database {target} exists; checking each step")

        from proteus import config as pconfig

        config = pconfig.set_trytond(database=name, user="admin")
        company = ensure_company(config)
        ensure_chart(config, company)
        ensure_fiscal_years(config, company, [this_year, this_year + 1])
        ensure_payment_term(config)
        if ensure_api_user(config, company, api_login, api_password):
            set_password_hash(name, api_login, api_password)

        if fresh:
            publish(work / f"{name}.sqlite", target)
            log(f"database ready: {target}")
        else:
            log("done")
    finally:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db-dir",
        default=os.environ.get("TRYTON_DB_DIR", str(REPO / "var" / "tryton")),
        help="directory of the SQLite file (env TRYTON_DB_DIR; default var/tryton)",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("TRYTON_DB", "ledgerline"),
        help="database name; the file is <db-dir>/<name>.sqlite (env TRYTON_DB)",
    )
    parser.add_argument("--config", default=None, help="trytond.conf to read first (optional)")
    args = parser.parse_args(argv)
    prepare(Path(args.db_dir).resolve(), args.database, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
