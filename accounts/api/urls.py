"""/api/v1/auth/ routes."""

from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/tokens/", views.TokenCollectionApi.as_view(), name="api-tokens"),
    path("auth/tokens/<str:token_key>/", views.TokenDetailApi.as_view(), name="api-token"),
]
