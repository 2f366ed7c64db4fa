"""bench/ingest.py helper, run with DATABASE_URL of the bench database:
create the customers, mappings, metric and API key the benchmark sends to,
and print them as one JSON line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from core.models import Currency, Customer, LegalEntity  # noqa: E402
from core.services import api_key_create  # noqa: E402
from core.actors import Actor  # noqa: E402
from metering.models import CustomerMapping  # noqa: E402
from metering.services import metric_create  # noqa: E402

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "200"))


class SetupIds(TypedDict):
    """The JSON line this script prints, which bench/ingest.py reads."""

    raw_key: str
    api_key_id: int
    metric_id: int
    version_id: int
    customer_ids: list[int]


def main() -> None:
    actor = Actor.system("bench")
    usd = Currency.objects.get_or_create(
        code="USD", defaults={"name": "US Dollar", "minor_units": 2}
    )[0]
    entity = LegalEntity.objects.create(
        code="bench", name="Bench Inc.", base_currency=usd, country="US"
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(legal_entity=entity, code=f"c{i}", name=f"Customer {i}")
            for i in range(CUSTOMERS)
        ]
    )
    CustomerMapping.objects.bulk_create(
        [
            CustomerMapping(source="shop", customer_ref=f"acct-{i}", customer=c)
            for i, c in enumerate(customers)
        ]
    )
    version = metric_create(
        code="api_calls",
        name="API calls",
        aggregation="sum",
        value_property="units",
        actor=actor,
        properties_schema={
            "type": "object",
            "properties": {"units": {"type": "number"}, "region": {"enum": ["eu", "us", "ap"]}},
        },
    )
    issued = api_key_create(name="bench", scopes=["usage:write"], actor=actor)
    ids: SetupIds = {
        "raw_key": issued.raw_key,
        "api_key_id": issued.api_key.pk,
        "metric_id": version.metric_id,
        "version_id": version.pk,
        "customer_ids": [c.pk for c in customers],
    }
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
