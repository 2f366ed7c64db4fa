"""The history tab of any object, read from the audit trail (issue 15, item 4).

An object's history is the audit entries about it and those of related or batch
actions that name it: a run that drafted an invoice, a contract of a customer,
the mapping that released a held event. Each page says where to look with
`Source`s; `history` reads all of them in one query (the database says which
source matched each entry) and shows before and after field by field.

This is the exceptions core: it reads only the audit trail, so every app's
pages may use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Case, IntegerField, Q, Value, When

from exceptions.models import AuditEntry, ExceptionCase


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class HistoryRow:
    """One audit entry about an object, its fields' before and after side by side."""

    at: datetime
    actor: str
    action: str
    reason: str
    via: str  # "" for an entry on the object itself, else what wrote it (a batch, a memo, a run)
    changes: list[FieldChange]
    seq: int


@dataclass(frozen=True)
class Shown:
    """What a history row shows of an entry: where it came from and the part about this object."""

    via: str
    before: Any
    after: Any


#: Reads an entry found by a source: what to show, or None to leave it out (a batch that does
#: not name this object after all).
Reader = Callable[[AuditEntry], Shown | None]


def as_is(via: str = "") -> Reader:
    """Show the entry whole, labelled `via` ("" on the object itself)."""
    return lambda e: Shown(via=via, before=e.before, after=e.after)


@dataclass(frozen=True)
class Source:
    """Where some of an object's history is: the entries `entries` selects, read by `read`."""

    entries: Q
    read: Reader = field(default_factory=as_is)


def own(object_type: str, object_id: object) -> Source:
    """The entries written about the object itself."""
    return Source(Q(object_type=object_type, object_id=str(object_id)))


def related(
    object_type: str,
    labels: Mapping[str, str],
    *,
    prefix: str = "",
    actions: Sequence[str] = (),
) -> Source:
    """The entries of related objects (`labels`: their id -> what to call them), e.g. a
    customer's contracts; `actions` keeps only those actions."""
    q = Q(object_type=object_type, object_id__in=list(labels))
    if actions:
        q &= Q(action__in=list(actions))
    return Source(
        q,
        lambda e: Shown(
            via=f"{prefix}{labels.get(e.object_id, e.object_repr)}", before=e.before, after=e.after
        ),
    )


def _shown(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def field_changes(before: object, after: object) -> list[FieldChange]:
    """Before and after of an audit entry as field-by-field changes (fields that did not change
    are left out; a non-dict side is shown whole as field "value")."""
    b = before if isinstance(before, dict) else ({} if before is None else {"value": before})
    a = after if isinstance(after, dict) else ({} if after is None else {"value": after})
    rows = []
    for key in list(dict.fromkeys([*b, *a])):
        old, new = b.get(key), a.get(key)
        if old != new:
            rows.append(FieldChange(field=str(key), before=_shown(old), after=_shown(new)))
    return rows


#: The most entries one history page shows (the newest; the audit page has the rest).
HISTORY_LIMIT = 500


def history(sources: Sequence[Source], *, limit: int = HISTORY_LIMIT) -> list[HistoryRow]:
    """The entries any of `sources` selects, oldest first, each read by the first source that
    selects it; one query."""
    if not sources:
        return []
    which = Case(
        *(When(s.entries, then=Value(i)) for i, s in enumerate(sources)),
        output_field=IntegerField(),
    )
    anywhere = Q()
    for s in sources:
        anywhere |= s.entries
    entries = AuditEntry.objects.filter(anywhere).annotate(source=which).order_by("-seq")[:limit]
    rows = []
    for e in reversed(list(entries)):
        shown = sources[e.source].read(e)  # `source`: the annotation above
        if shown is None:
            continue
        rows.append(
            HistoryRow(
                at=e.at,
                actor=e.actor_label,
                action=e.action,
                reason=e.reason,
                via=shown.via,
                changes=field_changes(shown.before, shown.after),
                seq=e.seq,
            )
        )
    return rows


def case_history(*, case: ExceptionCase) -> list[HistoryRow]:
    """An exception case's entries (opened, seen again, assigned, commented, proposals, decided,
    closed) and those of the record that failed (its source), e.g. the posting or the rejected
    event, which show what the fix changed there."""
    sources = [own(case._meta.label_lower, case.pk)]
    if case.source_type and case.source_id:
        sources.append(
            related(
                case.source_type, {case.source_id: f"source {case.source_type} {case.source_id}"}
            )
        )
    return history(sources)
