from datetime import date

from core.query import date_params


def test_dates_are_read_and_bad_ones_are_named() -> None:
    dates, errors = date_params({"from": "2026-11-01", "to": "31/11/2026"}, "from", "to", "absent")
    assert dates == {"from": date(2026, 11, 1), "to": None, "absent": None}
    assert errors == ["'31/11/2026' is not a date (use YYYY-MM-DD)."]


def test_billing_and_usage_pages_say_which_date_they_could_not_read(client, auditor) -> None:
    client.force_login(auditor)
    for url, key in (("/billing/invoices/", "issued_from"), ("/metering/", "date_to")):
        page = client.get(url, {key: "yesterday"})
        assert page.status_code == 200, url
        assert "&#x27;yesterday&#x27; is not a date" in page.content.decode(), url
