"""What billing may call in metering: this module and nothing else of metering.

Billing reads usage (summaries, the events behind them, their amounts for
percentage pricing), asks metering to summarize and close windows, and, for
the demo data only, creates metrics and mappings and sends usage. Keep this
list exact: a name billing stops using leaves it, a new one is added here
first, so metering's side of the seam is one page to read.
"""

from metering.models import CustomerMapping, MetricDefinition, UsageEvent, UsageSummary
from metering.selectors import (
    counted_usage_events,
    event_supersessions,
    summaries_for_event,
    summary_event_values,
    summary_events,
)
from metering.services import (
    customer_mapping_create,
    metric_create,
    usage_ingest,
    usage_summaries_close,
    usage_summarize_window,
)

__all__ = [
    # read models billing filters and joins on (MetricDefinition: metric codes of the summaries
    # a run fetched; CustomerMapping: the customer page and the history tabs list a customer's
    # identity mappings)
    "CustomerMapping",
    "MetricDefinition",
    "UsageEvent",
    "UsageSummary",
    # reads: lineage and percentage pricing; usage as it stands (superseded events left out,
    # decision 51) for the receivables page, and an event's supersessions for its history tab
    "counted_usage_events",
    "event_supersessions",
    "summaries_for_event",
    "summary_event_values",
    "summary_events",
    # writes: summaries for a billing run, closed when their invoices are finalized
    "usage_summaries_close",
    "usage_summarize_window",
    # demo data only (billing/demo.py)
    "customer_mapping_create",
    "metric_create",
    "usage_ingest",
]
