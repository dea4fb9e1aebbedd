"""/api/v1/predictions/ routes."""

from django.urls import path

from predictions.api import batches, fastpath, sites, views

urlpatterns = [
    # A plain single prediction is answered without DRF; the rest goes to PredictionCollectionApi.
    path("predictions/", fastpath.prediction_collection, name="api-predictions"),
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

urlpatterns += [
    path("batches/", batches.BatchCollectionApi.as_view(), name="api-batches"),
    path("batches/<str:job_id>/", batches.BatchDetailApi.as_view(), name="api-batch-detail"),
    path("batches/<str:job_id>/cancel/", batches.BatchCancelApi.as_view(), name="api-batch-cancel"),
    path(
        "batches/<str:job_id>/results.csv",
        batches.BatchResultsApi.as_view(),
        name="api-batch-results",
    ),
    path(
        "batches/<str:job_id>/errors.csv",
        batches.BatchErrorsApi.as_view(),
        name="api-batch-errors",
    ),
]

urlpatterns += [
    path("sites/", sites.SiteCollectionApi.as_view(), name="api-sites"),
    path("sites/<str:code>/", sites.SiteDetailApi.as_view(), name="api-site-detail"),
]
