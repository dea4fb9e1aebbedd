"""/api/v1/predictions/ routes."""

from django.urls import path

from predictions.api import views

urlpatterns = [
    path("predictions/", views.PredictionCollectionApi.as_view(), name="api-predictions"),
    path(
        "predictions/<str:prediction_id>/",
        views.PredictionDetailApi.as_view(),
        name="api-prediction-detail",
    ),
    path(
        "predictions/<str:prediction_id>/outcome/",
        views.OutcomeCreateApi.as_view(),
        name="api-prediction-outcome",
    ),
]
