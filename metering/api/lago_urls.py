from django.urls import path, re_path

from metering.api import lago_views

# Under /compat/lago/ (config/urls.py): Lago's clients append api/v1/... to that base URL.
urlpatterns = [
    path("api/v1/events", lago_views.LagoEventCreateApi.as_view(), name="lago-events"),
    path("api/v1/events/batch", lago_views.LagoEventBatchApi.as_view(), name="lago-events-batch"),
    re_path(r"", lago_views.lago_not_found),  # any other path: Lago's JSON 404
]
