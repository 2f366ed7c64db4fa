from django.urls import path

from billing.api import views

urlpatterns = [
    path("billing/price-plans", views.PricePlanListCreateApi.as_view(), name="api-price-plans"),
    path(
        "billing/price-plans/<slug:code>/versions",
        views.PricePlanVersionCreateApi.as_view(),
        name="api-price-plan-versions",
    ),
    path("billing/contracts", views.ContractListCreateApi.as_view(), name="api-contracts"),
    path(
        "billing/contracts/<int:pk>/amendments",
        views.ContractAmendApi.as_view(),
        name="api-contract-amend",
    ),
    path("billing/contracts/<int:pk>/end", views.ContractEndApi.as_view(), name="api-contract-end"),
    path("invoices", views.InvoiceListApi.as_view(), name="api-invoices"),
    path("invoices/<int:pk>", views.InvoiceDetailApi.as_view(), name="api-invoice"),
    path("invoices/<int:pk>/lines", views.InvoiceLinesApi.as_view(), name="api-invoice-lines"),
    path(
        "invoice-lines/<int:pk>/lineage",
        views.InvoiceLineLineageApi.as_view(),
        name="api-invoice-line-lineage",
    ),
    path(
        "usage-events/<int:seq>/invoice-lines",
        views.EventInvoiceLinesApi.as_view(),
        name="api-event-invoice-lines",
    ),
]
