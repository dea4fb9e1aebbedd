"""The hot path of `POST /api/v1/predictions/`: one prediction with a token, without DRF.

Programs that score one row at a time call this endpoint far more than any other, and DRF's
request wrapping, serializer and renderer cost more CPU than validating, scoring and logging
the prediction itself. ``handle`` answers the common case directly with the same pieces the
DRF view uses: the same token authentication, the same throttle and counts, the same service
(``prediction_create``) and the same response body and error format. One difference: a token
this process checked in the last API_TOKEN_CACHE_SECONDS is not looked up again; instead the
audit INSERT itself checks that it still works, so a revoked token writes nothing and is
refused by the DRF view.

Anything out of the ordinary returns ``None`` before any side effect, and the DRF view then
handles the request as usual: no or another Authorization scheme, a bad or expired token, a
denied throttle, an Idempotency-Key, ``instances``, another content type, an Accept header
that JSON does not satisfy, a body that is not a plain ``{"inputs": {...}}`` object, or a
database error (nothing was written; the view answers the outage). So every error response
keeps coming from one place, and only a valid-looking request with a working token takes this
path.

``FastPathMiddleware`` calls it before the middleware that only browser sessions need
(sessions, CSRF, messages, sign-in lockouts, htmx, static files) and before URL resolution;
the middleware that shape every response (metrics, request id and log line, security headers,
frame options, CSP) run before it and so treat its answers like any other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.urls import resolve, reverse
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions
from rest_framework.utils.json import strict_constant

from accounts.authentication import (
    ApiTokenAuthentication,
    api_token_still_valid,
    forget_checked_token,
)
from floodsite.db import GuardFailed
from floodsite.exceptions import ApplicationError, error_body
from floodsite.rest import ScopedThrottle, client_ip
from predictions.api.views import prediction_to_dict
from predictions.models import Source
from predictions.services import prediction_create

_AUTHENTICATION = ApiTokenAuthentication()
_JSON_TYPES = ("application/json", "application/json; charset=utf-8")
_ACCEPTS_JSON = ("", "*/*", "application/json")
# What DRF's APIView adds to every response of this view; the fast path answers alike.
_ALLOW = "GET, POST, HEAD, OPTIONS"


class _ThrottleView:
    """What ScopedRateThrottle reads from a view: the scope of `POST /predictions/`."""

    throttle_scope = "predict"


_THROTTLE_VIEW = _ThrottleView()


def _plain_inputs(body: bytes) -> dict[str, Any] | None:
    """``{"inputs": {name: scalar}}`` decoded, or None for anything the full path must judge."""
    try:
        data = json.loads(body, parse_constant=strict_constant)
    except (ValueError, RecursionError):  # includes JSONDecodeError and UnicodeDecodeError
        return None
    if type(data) is not dict or len(data) != 1:
        return None
    inputs = data.get("inputs")
    if type(inputs) is not dict:
        return None
    for value in inputs.values():
        if isinstance(value, dict | list):
            return None
    return inputs


def handle(request: HttpRequest) -> HttpResponse | None:
    """Answer a plain token-authenticated single prediction, or None to take the DRF path."""
    meta = request.META
    header = meta.get("HTTP_AUTHORIZATION", "")
    if (
        not header.startswith("Token ")
        or "HTTP_IDEMPOTENCY_KEY" in meta
        or meta.get("CONTENT_TYPE", "").lower() not in _JSON_TYPES
        or meta.get("HTTP_ACCEPT", "") not in _ACCEPTS_JSON
    ):
        return None
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None
    parts = header.encode("latin-1", "replace").split()
    if len(parts) != 2:
        return None
    try:
        user, digest = _AUTHENTICATION.authenticate_reusable(parts[1])
    except drf_exceptions.AuthenticationFailed:
        return None
    # Read only now: Django keeps the bytes, so the DRF path can still parse them.
    inputs = _plain_inputs(request.body)
    if inputs is None:
        return None
    request.user = user
    throttle = ScopedThrottle()
    if not throttle.allow_request(request, _THROTTLE_VIEW):
        # The DRF view asks again and answers the 429 with Retry-After; one more count in a
        # window that is already over its limit changes nothing.
        return None
    try:
        prediction = prediction_create(
            user=user,
            source=Source.API,
            inputs=inputs,
            request_id=getattr(request, "request_id", ""),
            client_ip=client_ip(request),
            # The token may come from this process's earlier check: the INSERT checks it again.
            guard=api_token_still_valid(digest=digest, user_id=user.pk, now=timezone.now()),
        )
    except GuardFailed:
        # Revoked, expired or deactivated since it was checked: nothing was written, and the
        # DRF view looks the token up afresh and answers 401.
        forget_checked_token(digest)
        return None
    except ApplicationError as exc:
        body = error_body(request, code=exc.code, message=exc.message, fields=exc.fields)
        return _json(body, status=exc.status_code)
    return _json(prediction_to_dict(prediction, outcome=False), status=201)


def _json(body: dict[str, Any], *, status: int) -> HttpResponse:
    """As DRF's JSONRenderer writes it (compact, UTF-8, no NaN), with the view's Allow and
    the Content-Length that CommonMiddleware adds on the full path."""
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    response = HttpResponse(content.encode(), status=status, content_type="application/json")
    response["Allow"] = _ALLOW
    response["Content-Length"] = str(len(response.content))
    return response


class FastPathMiddleware:
    """Sends `POST /api/v1/predictions/` to ``handle`` first; anything it declines, and every
    other request, continues down the middleware list to the view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._path = reverse("api-predictions")
        # The metrics label the answer by URL pattern, as if the URL had been resolved.
        self._match = resolve(self._path)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path_info == self._path:
            try:
                response = handle(request)
            except DatabaseError:
                # Nothing was written; the view meets the same error and answers it (503).
                response = None
            if response is not None:
                request.resolver_match = self._match
                return response
        return self.get_response(request)
