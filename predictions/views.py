"""Pages of the predictions app."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from floodsite.exceptions import ApplicationError
from mlcore.selectors import model_version_get_production


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in start page: which model is answering and how well it scored."""
    try:
        model_version = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
        problem = ""
    except ApplicationError as exc:
        model_version, problem = None, exc.message
    return render(
        request,
        "predictions/home.html",
        {"model_version": model_version, "model_problem": problem},
    )
