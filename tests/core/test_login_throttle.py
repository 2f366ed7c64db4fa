"""Failed logins are throttled per account and per address, and each lock-out is audited once."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from exceptions.models import AuditEntry

pytestmark = pytest.mark.django_db
LIMIT = 5  # AXES_FAILURE_LIMIT


def _login(username: str, password: str, ip: str = "203.0.113.7") -> int:
    response = Client(REMOTE_ADDR=ip).post(
        "/accounts/login/", {"username": username, "password": password}
    )
    return response.status_code


def _lock_outs() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action="login.lock_out").order_by("seq"))


@pytest.fixture
def alice() -> User:
    return User.objects.create_user(username="alice", password="right-password-1")


def test_an_account_is_locked_after_the_limit_from_any_address(alice: User) -> None:
    for i in range(LIMIT - 1):
        assert (
            _login("alice", "wrong", ip=f"198.51.100.{i}") == 200
        )  # the form again, with an error
    assert _login("alice", "wrong", ip="198.51.100.50") == 429
    # locked: even the right password, from yet another address, is refused
    assert _login("alice", "right-password-1", ip="198.51.100.99") == 429
    [entry] = _lock_outs()
    assert (entry.actor_label, entry.object_type, entry.object_id) == (
        "login throttle",
        "auth.login",
        "alice",
    )
    assert entry.after == {"username": "alice", "ip_address": "198.51.100.50", "failures": LIMIT}


def test_an_address_is_locked_after_the_limit_across_accounts(alice: User) -> None:
    for i in range(LIMIT - 1):
        assert _login(f"guess{i}", "wrong") == 200
    assert _login("guess-last", "wrong") == 429
    # the address is locked, for a real account too
    assert _login("alice", "right-password-1") == 429
    # another address may still log in
    assert _login("alice", "right-password-1", ip="192.0.2.1") == 302
    assert len(_lock_outs()) == 1


def test_attempts_during_a_lock_out_write_no_more_entries(alice: User) -> None:
    for _ in range(LIMIT):
        _login("alice", "wrong")
    for _ in range(10):
        assert _login("alice", "wrong") == 429
    assert len(_lock_outs()) == 1


def test_a_successful_login_resets_the_count(alice: User) -> None:
    for _ in range(LIMIT - 1):
        _login("alice", "wrong")
    assert _login("alice", "right-password-1") == 302
    for _ in range(LIMIT - 1):
        assert _login("alice", "wrong") == 200
    assert not _lock_outs()
