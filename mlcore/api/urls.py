"""/api/v1/models/ routes."""

from django.urls import path

from mlcore.api import views

urlpatterns = [
    path("models/", views.ModelListApi.as_view(), name="api-models"),
    path("models/active/", views.ModelActiveApi.as_view(), name="api-model-active"),
    path(
        "models/<slug:name>/<int:version>/",
        views.ModelDetailApi.as_view(),
        name="api-model-detail",
    ),
    path(
        "models/<slug:name>/<int:version>/onnx",
        views.ModelOnnxApi.as_view(),
        name="api-model-onnx",
    ),
]
