from django.urls import path

from exceptions import views
from exceptions.workbench import views as workbench

app_name = "exceptions"
urlpatterns = [
    path("audit/", views.audit_list, name="audit"),
    path("audit/verify/", views.audit_verify, name="audit_verify"),
    path("cases/<int:pk>/history/", views.case_history, name="case_history"),
    path("", workbench.queue, name="queue"),
    path("bulk/", workbench.queue_bulk, name="bulk"),
    path("policies/", workbench.policies, name="policies"),
    path("disputes/new/", workbench.dispute_new, name="dispute_new"),
    path("invoices/<int:pk>/credit/", workbench.credit_request, name="credit_request"),
    path("cases/<int:pk>/", workbench.case_detail, name="case"),
    path("cases/<int:pk>/<slug:action>/", workbench.case_action, name="case_action"),
]
