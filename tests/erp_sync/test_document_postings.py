"""Each ERP posting's status on the invoice page (issue 15, item 3), through erp_sync's
fragment that the invoice page loads."""

from __future__ import annotations

from datetime import date

import pytest

from erp_sync import selectors
from erp_sync.connectors.memory import memory_erp
from erp_sync.models import Posting
from erp_sync.services import ledger_consume, outbox_drain
from tests.billing.conftest import ACTOR
from tests.erp_sync.world import billed_world, memory_connection

pytestmark = pytest.mark.django_db


def test_invoice_page_loads_the_status_of_each_of_its_postings(client, clerk, make_user) -> None:
    erp = memory_erp("test")
    erp.reset()
    try:
        world = billed_world(2)
        memory_connection(world.entity)
        ledger_consume(actor=ACTOR)
        first, second = world.invoices
        erp.closed_before = date(2027, 1, 1)  # every posting fails: the ERP's period is closed
        outbox_drain()
        erp.closed_before = None
        mine = list(selectors.document_postings(invoice_id=first.pk))
        assert mine and all(
            p.source_document_id == first.pk
            or (p.entry is not None and p.entry.source_document_id == first.pk)
            for p in mine
        )
        others = set(Posting.objects.values_list("pk", flat=True)) - {p.pk for p in mine}
        assert others  # the second invoice's postings are not this one's

        client.force_login(clerk)
        invoice_page = client.get(f"/billing/invoices/{first.pk}/").content.decode()
        url = f"/erp/documents/{first.pk}/postings/"
        assert f'hx-get="{url}"' in invoice_page and f'href="{url}"' in invoice_page
        fragment = client.get(url, headers={"HX-Request": "true"}).content.decode()
        assert "<nav" not in fragment  # the table alone, for the invoice page
        for p in mine:
            assert f'href="/erp/postings/{p.pk}/"' in fragment
        assert "Failed (permanent error)" in fragment and "$" in fragment
        for pk in others:
            assert f'href="/erp/postings/{pk}/"' not in fragment
        page = client.get(url).content.decode()  # without JavaScript: a page of its own
        assert '<nav aria-label="Main">' in page and "Failed (permanent error)" in page
        assert client.get(f"/erp/documents/{second.pk + 1000}/postings/").status_code == 404
        client.force_login(make_user("nobody"))
        assert client.get(url).status_code == 403
    finally:
        erp.reset()
