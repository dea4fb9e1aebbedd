"""URLs of the predictions pages."""

from django.urls import path

from predictions import views

urlpatterns = [
    path("predict/", views.predict, name="predict"),
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
