from django.urls import path

from metering.api import views

urlpatterns = [
    path("events", views.EventIngestApi.as_view(), name="api-events"),
    path("metering/metrics", views.MetricListCreateApi.as_view(), name="api-metrics"),
    path(
        "metering/metrics/<slug:code>/versions",
        views.MetricVersionCreateApi.as_view(),
        name="api-metric-versions",
    ),
    path("metering/mappings", views.MappingListCreateApi.as_view(), name="api-mappings"),
    path("metering/rejected", views.RejectedListApi.as_view(), name="api-rejected"),
    path(
        "metering/rejected/<int:pk>/resubmit",
        views.RejectedResubmitApi.as_view(),
        name="api-rejected-resubmit",
    ),
    path("metering/control-totals", views.ControlTotalsApi.as_view(), name="api-control-totals"),
]
