"""URLs of the predictions pages."""

from django.urls import path

from predictions import site_risk_views, site_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("predict/", views.predict, name="predict"),
    path("batches/", views.batch_upload, name="batches"),
    path("batches/template.csv", views.batch_template, name="batch_template"),
    path("batches/<str:job_id>/", views.batch_detail, name="batch_detail"),
    path("batches/<str:job_id>/progress/", views.batch_progress_fragment, name="batch_progress"),
    path("batches/<str:job_id>/cancel/", views.batch_cancel_view, name="batch_cancel"),
    path(
        "batches/<str:job_id>/<str:kind>.csv",
        views.batch_download,
        name="batch_download",
    ),
    path("sites/", site_views.site_index, name="sites"),
    path("sites/new/", site_views.site_new, name="site_new"),
    path("sites/options/", site_views.site_options, name="site_options"),
    path("sites/<str:code>/edit/", site_views.site_edit, name="site_edit"),
    # After new/ and options/: those two words are not site codes (predictions.sites).
    path("sites/<str:code>/", site_risk_views.site_detail, name="site_detail"),
    path("map/", site_risk_views.site_map, name="site_map"),
    path("map/sites.json", site_risk_views.site_map_data, name="site_map_data"),
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
