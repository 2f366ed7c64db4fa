"""The configured django-q2 broker carries a task from enqueue to execution."""

from __future__ import annotations

import pytest
from django.conf import settings
from django_q.brokers import get_broker
from django_q.signing import SignedPackage
from django_q.tasks import async_task

pytestmark = [pytest.mark.taskqueue, pytest.mark.django_db(transaction=True)]


def test_broker_is_redis_when_redis_url_is_set_else_orm() -> None:
    broker = get_broker()
    expected = "Redis" if settings.REDIS_URL else "ORM"
    assert type(broker).__name__ == expected
    assert broker.ping()


def test_a_task_goes_through_the_broker_and_runs() -> None:
    broker = get_broker()
    broker.purge_queue()
    task_id = async_task("core.tasks.ping", "hello", broker=broker)
    assert broker.queue_size() == 1
    items = broker.dequeue()
    assert items, "nothing came back from the broker"
    ack_id, payload = items[0]
    task = SignedPackage.loads(payload)
    assert task["id"] == task_id
    from django_q.utils import get_func_repr  # noqa: F401  (module exists in supported versions)
    from importlib import import_module

    module, func = task["func"].rsplit(".", 1)
    assert getattr(import_module(module), func)(*task["args"]) == "pong:hello"
    broker.acknowledge(ack_id)
    assert broker.queue_size() == 0
