from django.urls import path

from exceptions import views

app_name = "exceptions"
urlpatterns = [path("audit/", views.audit_list, name="audit")]
