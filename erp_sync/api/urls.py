from django.urls import path

from erp_sync.api import views

urlpatterns = [
    path("postings", views.PostingListApi.as_view(), name="api-postings"),
    path("postings/<int:pk>", views.PostingDetailApi.as_view(), name="api-posting"),
    path("postings/<int:pk>/replay", views.PostingReplayApi.as_view(), name="api-posting-replay"),
    path("erp/connections", views.ConnectionListCreateApi.as_view(), name="api-erp-connections"),
    path(
        "erp/connections/<int:pk>", views.ConnectionDetailApi.as_view(), name="api-erp-connection"
    ),
    path(
        "erp/connections/<int:pk>/account-mappings",
        views.AccountMappingSetApi.as_view(),
        name="api-erp-account-mappings",
    ),
    path(
        "erp/connections/<int:pk>/party-mappings",
        views.PartyMappingSetApi.as_view(),
        name="api-erp-party-mappings",
    ),
]
