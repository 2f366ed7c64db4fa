"""Audit action names written by the exceptions core. Values are kept: the audit page filters on them."""

from enum import StrEnum


class CaseAction(StrEnum):
    OPEN = "case.open"
    RECUR = "case.recur"
    RESOLVED = "case.resolved"
    DISMISSED = "case.dismissed"


#: The action that closing a case with a given status writes.
CLOSE_ACTIONS: dict[str, CaseAction] = {
    "resolved": CaseAction.RESOLVED,
    "dismissed": CaseAction.DISMISSED,
}
