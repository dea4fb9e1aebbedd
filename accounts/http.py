"""Request types for views that only a signed-in user reaches, so ``request.user`` is a User."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest
from rest_framework.request import Request

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    from accounts.models import User


class AuthenticatedHttpRequest(HttpRequest):
    """What a page behind ``login_required`` receives (annotation only, never instantiated):
    the user is a real User, and django-htmx's middleware, which every request passes, has
    set ``htmx``."""

    user: User
    htmx: HtmxDetails


class AuthenticatedRequest(Request):
    """What a DRF view behind ``IsAuthenticated`` (the default) receives: a real User."""

    user: User
