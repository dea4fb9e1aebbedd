"""Top-level URLs: pages, the API, admin, the health probes and the metrics scrape."""

from django.contrib import admin
from django.urls import include, path

from floodsite import health, metrics

urlpatterns = [
    # First: the API is the busiest prefix, and Django tries the patterns in order.
    path("", include("floodsite.api")),
    path("", include("predictions.urls")),
    path("", include("modelops.urls")),
    path("accounts/", include("accounts.urls")),
    path("models/", include("mlcore.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler403 = "floodsite.exceptions.permission_denied"
handler404 = "floodsite.exceptions.page_not_found"
handler500 = "floodsite.exceptions.server_error"
