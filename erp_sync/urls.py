from django.urls import path

from erp_sync import views, views_documents

app_name = "erp_sync"
urlpatterns = [
    path("postings/", views.posting_list, name="postings"),
    path("postings/<int:pk>/", views.posting_detail, name="posting"),
    path("postings/<int:pk>/replay/", views.posting_replay_view, name="posting_replay"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
    path("reconciliation/run/", views.reconciliation_run, name="reconciliation_run"),
    path(
        "documents/<int:invoice_id>/postings/",
        views_documents.document_postings,
        name="document_postings",
    ),
]
