"""URLs of the predictions pages."""

from django.urls import path

from predictions import monitoring_views, views

urlpatterns = [
    path("monitoring/", monitoring_views.dashboard, name="monitoring"),
    path("monitoring/check/", monitoring_views.check_run, name="monitoring_check"),
    path(
        "monitoring/alerts/<int:alert_id>/acknowledge/",
        monitoring_views.alert_acknowledge_view,
        name="alert_acknowledge",
    ),
    path(
        "monitoring/alerts/<int:alert_id>/resolve/",
        monitoring_views.alert_resolve_view,
        name="alert_resolve",
    ),
    path("monitoring/charts/bands.svg", monitoring_views.bands_chart, name="chart_bands"),
    path("monitoring/charts/latency.svg", monitoring_views.latency_chart, name="chart_latency"),
    path("monitoring/charts/errors.svg", monitoring_views.errors_chart, name="chart_errors"),
    path("monitoring/charts/accuracy.svg", monitoring_views.accuracy_chart, name="chart_accuracy"),
    path(
        "monitoring/charts/calibration/<int:version_id>.svg",
        monitoring_views.calibration_chart,
        name="chart_calibration",
    ),
    path("monitoring/charts/psi/<str:subject>.svg", monitoring_views.psi_chart, name="chart_psi"),
    path("predict/", views.predict, name="predict"),
    path("batches/", views.batch_upload, name="batches"),
    path("batches/<str:job_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<str:job_id>/progress/", views.batch_progress_fragment, name="batch_progress"),
    path("batches/<str:job_id>/cancel/", views.batch_cancel_view, name="batch_cancel"),
    path(
        "batches/<str:job_id>/<str:kind>.csv",
        views.batch_download,
        name="batch_download",
    ),
    path("predictions/", views.history, name="history"),
    path("predictions/export.csv", views.history_export, name="history_export"),
    path("predictions/<str:prediction_id>/", views.prediction_detail, name="prediction_detail"),
    path(
        "predictions/<str:prediction_id>/what-if/",
        views.prediction_what_if,
        name="prediction_what_if",
    ),
    path(
        "predictions/<str:prediction_id>/outcome/",
        views.prediction_outcome,
        name="prediction_outcome",
    ),
]
