"""The exception queue's error codes are promises to API clients: their values never change."""

from __future__ import annotations

from exceptions.error_codes import ExceptionsErrorCode


def test_exception_queue_error_codes_keep_their_values() -> None:
    assert {c.name: c.value for c in ExceptionsErrorCode} == {
        "CASE_STALE": "case_stale",
        "CASE_NOT_OPEN": "case_not_open",
        "CASE_OPEN": "case_open",
        "ACTION_NOT_ALLOWED": "action_not_allowed",
        "ACTION_NOT_AVAILABLE": "action_not_available",
        "SELF_APPROVAL": "self_approval",
        "NO_PENDING_PROPOSAL": "no_pending_proposal",
        "PROPOSAL_PENDING": "proposal_pending",
        "REASON_REQUIRED": "reason_required",
        "REASON_UNKNOWN": "reason_unknown",
        "INVALID_CORRECTION": "invalid_correction",
        "NOTHING_CHANGED": "nothing_changed",
        "IDEMPOTENCY_KEY_REUSED": "idempotency_key_reused",
        "POLICY_INVALID": "policy_invalid",
        "EVENT_BILLED": "event_billed",
    }
