from django.urls import path

from metering import views

app_name = "metering"
urlpatterns = [
    path("", views.control_totals, name="control-totals"),
    path("imports/", views.imports, name="imports"),
    path("imports/template.csv", views.import_template, name="import-template"),
    path("imports/<int:pk>/", views.import_detail, name="import-detail"),
    path("imports/<int:pk>/errors.csv", views.import_errors, name="import-errors"),
]
