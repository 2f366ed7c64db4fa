"""erp/tryton/prepare_db.py prepares one Tryton company per legal entity of the demo: the two
lists must not drift apart (prepare_db.py runs in .venv-tryton and cannot import Django)."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from types import ModuleType

from core import demo

from .conftest import REPO


def prepare_db() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prepare_db", REPO / "erp/tryton/prepare_db.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_demo_legal_entity_is_a_tryton_company_in_its_currency() -> None:
    companies = prepare_db().COMPANIES
    assert [(code, name, cur) for code, name, cur in companies] == [
        (code, name, cur) for code, name, cur, _country, _tz in demo.ENTITIES
    ]


def test_tryton_currencies_have_the_demo_minor_units() -> None:
    currencies = prepare_db().CURRENCIES
    for code, _name, minor_units in demo.CURRENCIES:
        _tname, _symbol, rounding, digits = currencies[code]
        assert digits == minor_units
        assert rounding == Decimal(1).scaleb(-minor_units)
