from django.urls import path

from billing import views, views_customers, views_plans, views_print

app_name = "billing"
urlpatterns = [
    path("invoices/", views.invoice_list, name="invoices"),
    path("search/", views.search, name="search"),
    path("invoices/export.csv", views.invoice_export, name="invoices_export"),
    path("invoices/finalize/", views.invoices_finalize_selected, name="invoices_finalize"),
    path("invoices/<int:pk>/", views.invoice_detail, name="invoice"),
    path("invoices/<int:pk>/history/", views.invoice_history, name="invoice_history"),
    path("invoices/<int:pk>/print/", views_print.invoice_print, name="invoice_print"),
    path("invoices/<int:pk>/pdf/", views_print.invoice_pdf, name="invoice_pdf"),
    path("invoices/<int:pk>/finalize/", views.invoice_finalize, name="invoice_finalize"),
    path("invoices/<int:pk>/void/", views.invoice_void, name="invoice_void"),
    path("invoices/<int:pk>/paid/", views.invoice_mark_paid, name="invoice_paid"),
    path("invoices/<int:pk>/credit/", views.invoice_credit, name="invoice_credit"),
    path("lines/<int:pk>/", views.line_lineage, name="line"),
    path("events/", views.event_lines, name="event_lines"),
    path("plans/", views_plans.plan_list, name="plans"),
    path("plans/new/", views_plans.plan_edit, name="plan_new"),
    path("plans/<slug:code>/versions/new/", views_plans.plan_edit, name="plan_version_new"),
    path("contracts/", views_plans.contract_list, name="contracts"),
    path("contracts/new/", views_plans.contract_edit, name="contract_new"),
    path("contracts/<int:pk>/amend/", views_plans.contract_amend, name="contract_amend"),
    path("runs/", views.run_list, name="runs"),
    path("runs/start/", views.run_start, name="run_start"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run_progress"),
    path("runs/<int:pk>/finalize/", views.run_finalize, name="run_finalize"),
    # issue 15, items 4, 5 and 8: customers, receivables, run history, history tabs
    path("customers/<int:pk>/", views_customers.customer_detail, name="customer"),
    path("customers/<int:pk>/history/", views_customers.customer_history, name="customer_history"),
    path("contracts/<int:pk>/", views_customers.contract_detail, name="contract"),
    path("plans/<int:pk>/", views_customers.plan_detail, name="plan"),
    path("contracts/<int:pk>/history/", views_customers.contract_history, name="contract_history"),
    path("plans/<int:pk>/history/", views_customers.plan_history, name="plan_history"),
    path("events/<int:seq>/history/", views_customers.event_history, name="event_history"),
    path("receivables/", views_customers.receivables_page, name="receivables"),
    path("runs/history/", views_customers.run_history, name="run_history"),
    path("runs/<int:pk>/", views_customers.run_detail, name="run"),
]
