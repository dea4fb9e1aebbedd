"""Bench-only URLs: every product route plus the naive reference prediction endpoint."""

from django.urls import path

from bench.api import REFERENCE_PATH
from bench.reference import ReferencePredictionApi
from floodsite import urls as product

urlpatterns = [
    path(
        REFERENCE_PATH.lstrip("/"),
        ReferencePredictionApi.as_view(),
        name="bench-reference-predictions",
    ),
    *product.urlpatterns,
]

handler403 = product.handler403
handler404 = product.handler404
handler500 = product.handler500
