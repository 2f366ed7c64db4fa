from django.urls import path

from exceptions.api import views

urlpatterns = [
    path("exception-cases", views.CaseListApi.as_view(), name="api-exception-cases"),
    path("exception-cases/<int:pk>", views.CaseDetailApi.as_view(), name="api-exception-case"),
    path(
        "exception-cases/<int:pk>/actions/<slug:action>",
        views.CaseActionApi.as_view(),
        name="api-exception-case-action",
    ),
]
