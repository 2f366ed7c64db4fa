from django.urls import path

from core.api import views

urlpatterns = [
    path("me", views.MeApi.as_view(), name="api-me"),
    path("legal-entities", views.LegalEntityListApi.as_view(), name="api-legal-entities"),
    path("customers", views.CustomerListCreateApi.as_view(), name="api-customers"),
]
