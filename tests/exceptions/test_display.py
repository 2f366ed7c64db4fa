"""What people read: money with its currency's symbol and minor units, times in their zone."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from core.models import Currency
from exceptions.templatetags.queue import money_text


@pytest.mark.parametrize(
    ("amount", "code", "minor", "shown"),
    [
        (Decimal("1234.5"), "USD", 2, "$1,234.50"),
        (Decimal("-12"), "EUR", 2, "(€12.00)"),
        (Decimal("1234.6"), "JPY", 0, "¥1,235"),
        (Decimal("0.1625"), "KWD", 3, "KWD\u00a00.163"),
        (Decimal("100000"), "GBP", 2, "£100,000.00"),
    ],
)
def test_money_has_symbol_and_minor_units(amount, code, minor, shown) -> None:
    assert money_text(amount, Currency(code=code, name=code, minor_units=minor)) == shown


@pytest.mark.django_db
def test_case_times_follow_the_browsers_time_zone(rejected_case, clerk) -> None:
    from django.utils import timezone

    c = Client()
    c.force_login(clerk)
    opened = rejected_case.first_seen_at
    utc = c.get(f"/exceptions/cases/{rejected_case.pk}/").content.decode()
    assert "Times in UTC" in utc and opened.strftime("%Y-%m-%d %H:%M") in utc
    c.cookies["tz"] = "Asia/Tokyo"
    tokyo = c.get(f"/exceptions/cases/{rejected_case.pk}/").content.decode()
    local = timezone.localtime(opened, timezone=__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
    assert "Times in Asia/Tokyo" in tokyo and local.strftime("%Y-%m-%d %H:%M") in tokyo
    c.cookies["tz"] = "Not/AZone"
    assert "Times in UTC" in c.get(f"/exceptions/cases/{rejected_case.pk}/").content.decode()
