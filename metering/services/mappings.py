"""Identity mappings (source, customer_ref) -> customer, and the release of held events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC

from django.db import connection, transaction
from django.utils import timezone

from core.actors import Actor
from core.errors import AppError, Conflict
from core.models import Customer
from exceptions.services import audit_record, case_resolve_open
from metering import partitions, reference
from metering.audit_actions import MeteringAction
from metering.error_codes import MeteringErrorCode
from metering.models import (
    CustomerMapping,
    HeldEvent,
    UsageEvent,
)
from metering.services.ingest import unmapped_fingerprint
from metering.services.tallies import _tally_add
from metering.summaries import event_insert_lock


def customer_mapping_create(
    *, source: str, customer_ref: str, customer: Customer, actor: Actor
) -> CustomerMapping:
    """Map (source, customer_ref) to a customer and release the events held for it."""
    source, customer_ref = source.strip(), customer_ref.strip()
    if not source or not customer_ref:
        raise AppError(
            "A mapping needs a source and a customer_ref.", code=MeteringErrorCode.MAPPING_INVALID
        )
    with transaction.atomic():
        reference.lock_mappings()  # no ingest transaction runs from here to commit
        if CustomerMapping.objects.filter(source=source, customer_ref=customer_ref).exists():
            raise Conflict(
                f"{source}:{customer_ref} is already mapped.", code=MeteringErrorCode.MAPPING_EXISTS
            )
        mapping = CustomerMapping(source=source, customer_ref=customer_ref, customer=customer)
        mapping.full_clean()
        mapping.save()
        audit_record(
            actor=actor,
            action=MeteringAction.MAPPING_CREATE,
            obj=mapping,
            after={"source": source, "customer_ref": customer_ref, "customer_id": customer.pk},
        )
        held_events_release(mapping=mapping, actor=actor)
    return mapping


def held_events_release(*, mapping: CustomerMapping, actor: Actor) -> int:
    """Move the held events of a mapped (source, customer_ref) into the event table, into their periods."""
    with transaction.atomic():
        held = list(
            HeldEvent.objects.select_for_update()
            .filter(
                source=mapping.source, customer_ref=mapping.customer_ref, released_at__isnull=True
            )
            .order_by("id")
        )
        if held:
            if connection.vendor == "postgresql":
                partitions.ensure_months({(h.timestamp.year, h.timestamp.month) for h in held})
            event_insert_lock()
            now = timezone.now()
            events = UsageEvent.objects.bulk_create(
                [
                    UsageEvent(
                        source=h.source,
                        event_id=h.event_id,
                        customer_ref=h.customer_ref,
                        customer_id=mapping.customer_id,
                        metric_id=h.metric_id,
                        metric_version_id=h.metric_version_id,
                        timestamp=h.timestamp,
                        value=h.value,
                        properties=h.properties,
                        received_at=h.received_at,
                        api_key_id=h.api_key_id,
                        held_event=h.pk,
                    )
                    for h in held
                ],
                batch_size=1000,
            )
            for h, e in zip(held, events, strict=True):
                h.released_at, h.released_seq, h.customer_id = now, e.seq, mapping.customer_id
            HeldEvent.objects.bulk_update(
                held, ["released_at", "released_seq", "customer"], batch_size=1000
            )
            per_day: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for h in held:
                per_day[(h.source, h.received_at.astimezone(UTC).date().isoformat())][
                    "released"
                ] += 1
            _tally_add(per_day)
            audit_record(
                actor=actor,
                action=MeteringAction.USAGE_RELEASE,
                obj=mapping,
                after={
                    "released": len(held),
                    "customer_id": mapping.customer_id,
                    "seq_from": events[0].seq,
                    "seq_to": events[-1].seq,
                },
            )
        case_resolve_open(
            fingerprint=unmapped_fingerprint(mapping.source, mapping.customer_ref),
            actor=actor,
            resolution=f"Mapped to customer {mapping.customer}; {len(held)} held event(s) released.",
        )
    return len(held)
