"""URLs of the model-operations pages: monitoring and a version's shadow comparison.

The addresses are the ones they had before this app held them (/monitoring/...,
/models/<name>/<version>/shadow/).
"""

from django.urls import path

from modelops import views

urlpatterns = [
    path("monitoring/", views.dashboard, name="monitoring"),
    path("monitoring/check/", views.check_run, name="monitoring_check"),
    path(
        "monitoring/alerts/<int:alert_id>/acknowledge/",
        views.alert_acknowledge_view,
        name="alert_acknowledge",
    ),
    path(
        "monitoring/alerts/<int:alert_id>/resolve/",
        views.alert_resolve_view,
        name="alert_resolve",
    ),
    path("monitoring/charts/bands.svg", views.bands_chart, name="chart_bands"),
    path("monitoring/charts/latency.svg", views.latency_chart, name="chart_latency"),
    path("monitoring/charts/errors.svg", views.errors_chart, name="chart_errors"),
    path("monitoring/charts/accuracy.svg", views.accuracy_chart, name="chart_accuracy"),
    path(
        "monitoring/charts/calibration/<int:version_id>.svg",
        views.calibration_chart,
        name="chart_calibration",
    ),
    path("monitoring/charts/psi/<str:subject>.svg", views.psi_chart, name="chart_psi"),
    path("models/<slug:name>/<int:version>/shadow/", views.model_shadow, name="model_shadow"),
]
