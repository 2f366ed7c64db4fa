from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required, login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import views as site_views
from core import views as core_views

admin.site.site_header = "Ledgerline administration"
admin.site.site_title = "Ledgerline"

urlpatterns = [
    path("", site_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("accounts/login/", login_not_required(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("exceptions/", include("exceptions.urls")),
    path("metering/", include("metering.urls")),
    path("billing/", include("billing.urls")),
    path("erp/", include("erp_sync.urls")),
    # API: Bearer keys; each view names the scope it needs.
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/v1/", include("metering.api.urls")),
    path("api/v1/", include("billing.api.urls")),
    path("api/v1/", include("erp_sync.api.urls")),
    path("api/v1/", include("core.api.urls")),
    path("api/v1/", include("exceptions.api.urls")),
    # Lago-compatible ingestion: clients change only their base URL to <ledgerline>/compat/lago/.
    path("compat/lago/", include("metering.api.lago_urls")),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
