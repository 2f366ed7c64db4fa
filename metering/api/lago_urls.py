from django.urls import path

from metering.api import lago_views

urlpatterns = [
    path("events", lago_views.LagoEventCreateApi.as_view(), name="lago-events"),
    path("events/batch", lago_views.LagoEventBatchApi.as_view(), name="lago-events-batch"),
]
