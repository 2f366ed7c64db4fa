"""Stable error codes of the exception queue. A code is a promise to API clients: never rename one."""

from enum import StrEnum


class ExceptionsErrorCode(StrEnum):
    CASE_STALE = "case_stale"  # the case changed since the form (or request) read it
    CASE_NOT_OPEN = "case_not_open"  # the action needs an open case
    CASE_OPEN = "case_open"  # reopen of a case that is not closed
    ACTION_NOT_ALLOWED = "action_not_allowed"  # the role may not take this action
    ACTION_NOT_AVAILABLE = "action_not_available"  # this kind of case has no such action
    SELF_APPROVAL = "self_approval"  # the proposer tried to approve their own proposal
    NO_PENDING_PROPOSAL = "no_pending_proposal"
    PROPOSAL_PENDING = "proposal_pending"  # a proposal already waits on this case
    REASON_REQUIRED = "reason_required"  # a reason code and a comment are required
    REASON_UNKNOWN = "reason_unknown"
    INVALID_CORRECTION = "invalid_correction"
    NOTHING_CHANGED = "nothing_changed"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # same key, different request
    POLICY_INVALID = "policy_invalid"
    EVENT_BILLED = "event_billed"  # the event is on a finalized invoice: correct it by a document
