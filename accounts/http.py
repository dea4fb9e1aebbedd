"""Types for views: requests that only a signed-in user sends, so ``request.user`` is a User,
and the type a view decorator keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from rest_framework.request import Request

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

    from accounts.models import User


# A page's view function, whatever its URL arguments: a decorator typed View -> View keeps it.
View = TypeVar("View", bound=Callable[..., HttpResponseBase])


class AuthenticatedHttpRequest(HttpRequest):
    """What a page behind ``login_required`` receives (annotation only, never instantiated):
    the user is a real User, and django-htmx's middleware, which every request passes, has
    set ``htmx``."""

    user: User
    htmx: HtmxDetails


class AuthenticatedRequest(Request):
    """What a DRF view behind ``IsAuthenticated`` (the default) receives: a real User."""

    user: User
