"""URLs of the model pages (/models/; a version's shadow comparison is modelops')."""

from django.urls import path

from mlcore import views

urlpatterns = [
    path("", views.model_list, name="model_list"),
    path("<slug:name>/<int:version>/", views.model_detail, name="model_detail"),
    path("<slug:name>/<int:version>/onnx.zip", views.model_onnx_download, name="model_onnx"),
]
