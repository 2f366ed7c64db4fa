"""Money with its currency's symbol and minor units; ages people read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core.formatting import format_money
from exceptions.history import FieldChange, field_changes

register = template.Library()


def money_text(amount: Decimal | None, currency: Any) -> str:
    """The amount as core.formatting writes money everywhere ('$1,234.50', '(€12.00)', '¥1,235',
    'KWD 0.163'); empty when there is no amount."""
    if amount is None or currency is None:
        return ""
    return format_money(amount, currency=currency.code, minor_units=currency.minor_units)


@register.filter
def money(amount: Decimal | None, currency: Any) -> str:
    return money_text(amount, currency)


@register.filter
def age(since: datetime | None) -> str:
    return age_text(since, now=timezone.now())


def age_text(since: datetime | None, *, now: datetime) -> str:
    """'3 d 4 h', '5 h', '12 min'."""
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h"
    return f"{rem // 60} min"


@register.filter
def past_due(due_at: datetime | None) -> bool:
    return due_at is not None and due_at < timezone.now()


@register.filter
def get(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key) if mapping else None


_ROW = (
    '<tr>{}<td><a href="{}{}/">{}</a></td><td title="{}">{}</td><td><span class="sev-{}">{}</span></td>'
    '<td>{}</td><td><a href="{}{}/">{}</a>{}</td><td>{}</td><td>{}</td>'
    '<td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>'
)


@register.simple_tag
def queue_rows(rows: Any, case_url: str, can_bulk: bool) -> SafeString:
    """The queue's table rows, built in Python as the admin builds its change list
    (django.contrib.admin.templatetags.admin_list.items_for_result): 50 rows of a template loop
    cost more than the page's queries. Every value is escaped by format_html."""

    def cells(r: Any) -> tuple[Any, ...]:
        select = (
            format_html(
                '<td><input type="checkbox" name="case" value="{}" aria-label="select case {}">'
                "</td>",
                r.id,
                r.id,
            )
            if can_bulk and r.is_open
            else (format_html("<td></td>") if can_bulk else "")
        )
        times = format_html(" <small>×{}</small>", r.occurrences) if r.occurrences > 1 else ""
        due = (
            format_html('<span class="pastdue">{} (past due)</span>', r.due)
            if r.past_due
            else r.due
        )
        return (
            select,
            case_url,
            r.id,
            r.id,
            r.kind,
            r.kind_label,
            r.severity,
            r.severity_label,
            r.status_label,
            case_url,
            r.id,
            r.title,
            times,
            r.entity,
            r.customer,
            r.amount,
            r.assignee or "—",
            r.age,
            due,
        )

    return format_html_join("\n", _ROW, (cells(r) for r in rows))


@register.filter
def changes(entry: Any) -> list[FieldChange]:
    """An audit entry's before and after as the fields that changed (exceptions.history)."""
    return field_changes(entry.before, entry.after)
