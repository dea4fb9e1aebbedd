"""Top-level URLs: pages, the API, admin and the health probes."""

from django.contrib import admin
from django.urls import include, path

from floodsite import health
from predictions import views as prediction_views

urlpatterns = [
    path("", prediction_views.home, name="home"),
    path("", include("predictions.urls")),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("", include("floodsite.api")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

handler403 = "floodsite.exceptions.permission_denied"
handler404 = "floodsite.exceptions.page_not_found"
handler500 = "floodsite.exceptions.server_error"
