"""The landing page: it shows figures of several apps, so it lives with the URL conf.

`config` is the one package that may import every app; the page holds no rule,
only counts that each app's selectors give (docs/decisions.md 36).
"""

from __future__ import annotations

from typing import TypedDict

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core import selectors as core_selectors
from exceptions import selectors as exceptions_selectors


class HomeSummary(TypedDict):
    legal_entities: int
    customers: int
    open_cases: int


def home_summary() -> HomeSummary:
    return {
        "legal_entities": core_selectors.legal_entities().count(),
        "customers": core_selectors.customers().count(),
        "open_cases": exceptions_selectors.open_cases().count(),
    }


def home(request: HttpRequest) -> HttpResponse:
    """The landing page: what the user's roles let them do, and the day's figures."""
    return render(request, "home.html", {"summary": home_summary()})
