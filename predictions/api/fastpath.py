"""The hot path of `POST /api/v1/predictions/`: one prediction with a token, without DRF.

Programs that score one row at a time call this endpoint far more than any other, and DRF's
request wrapping, serializer and renderer cost more CPU than validating, scoring and logging
the prediction itself. ``handle`` answers the common case directly with the same pieces the
DRF view uses: the same token authentication, the same throttle and counts, the same service
(``prediction_create``) and the same response body and error format. One difference: a token
this process checked in the last API_TOKEN_CACHE_SECONDS is not looked up again; instead the
audit INSERT itself checks that it still works and that its user still holds the permission to
predict, so a revoked token or role writes nothing and is refused by the DRF view.

Anything out of the ordinary returns ``None`` before any side effect, and the DRF view then
handles the request as usual: no or another Authorization scheme, a bad or expired token, a
denied throttle, an Idempotency-Key, a query string (``?explain=1``), ``instances``, another
content type, an Accept header that JSON does not satisfy, a body that is not a plain
``{"inputs": {...}}`` object, or a database error (nothing was written; the view answers the
outage); and, after scoring, an INSERT its guard refused. So every error response keeps
coming from one place, and only a valid-looking request with a working token of a user
allowed to predict takes this path.

``FastPathMiddleware``, first in MIDDLEWARE, calls it before any other middleware and before
URL resolution, and only for a request the site would serve: a Host outside ALLOWED_HOSTS, a
User-Agent in DISALLOWED_USER_AGENTS or a redirect the middleware would send (HTTPS, www.)
goes down the list to be refused or redirected there. The middleware that shape every
response (metrics, request id and log line, security headers, frame options, CSP) would cost
more than the prediction's own glue, so the fast path gives its answers the same shaping
itself, through the same functions and the same middleware classes (see the class).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import response_for_exception
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.urls import resolve, reverse
from django.utils import timezone
from django.utils.module_loading import import_string
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import (
    ApiTokenAuthentication,
    api_token_still_valid,
    forget_checked_token,
)
from accounts.roles import PREDICT
from floodsite import metrics
from floodsite.db import GuardFailed
from floodsite.exceptions import ApplicationError, error_body
from floodsite.middleware import request_begin, request_end
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
        # orjson refuses a few bodies the standard library reads (integers beyond 64 bits,
        # UTF-16 text); like every body it refuses, those go to the DRF view to be judged.
        data = orjson.loads(body)
    except orjson.JSONDecodeError:  # also invalid UTF-8 and nesting past its limit
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
        # A query string (``?explain=1``) asks for more than the common case.
        or meta.get("QUERY_STRING")
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
            # The token may come from this process's earlier check, and the permission to
            # predict is read nowhere else on this path: the INSERT checks both (a user
            # without it costs one scoring, then the DRF view answers the 403).
            guard=api_token_still_valid(
                digest=digest, user_id=user.pk, now=timezone.now(), permission=PREDICT
            ),
        )
    except GuardFailed:
        # Revoked, expired, deactivated or without the permission since it was checked:
        # nothing was written, and the DRF view looks the token up afresh and answers 401
        # or 403.
        forget_checked_token(digest)
        return None
    except ApplicationError as exc:
        body = error_body(request, code=exc.code, message=exc.message, fields=exc.fields)
        return _json(body, status=exc.status_code)
    return _json(prediction_to_dict(prediction, outcome=False), status=201)


def _json(body: dict[str, Any], *, status: int) -> HttpResponse:
    """Compact UTF-8 JSON as DRF's JSONRenderer writes it, with the view's Allow and the
    Content-Length that CommonMiddleware adds on the full path.

    orjson writes it about fifteen times faster than the standard library (about 50 µs of the
    request on the bench machine, mostly formatting the floats). The bytes are the same but
    for exponents (orjson writes 1e-7 where Python writes 1e-07), which parse to the same
    numbers. Every number here comes from validated, finite inputs, so orjson's null for NaN
    never applies. numpy scalars are written as numbers, as DRF's encoder writes them.
    """
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    response = HttpResponse(content, status=status, content_type="application/json")
    response["Allow"] = _ALLOW
    response["Content-Length"] = str(len(response.content))
    return response


# The middleware whose only work on a response is adding headers; the fast path adds the same
# headers to its answers (see FastPathMiddleware._shaping_headers), innermost first, as the
# middleware list would.
_HEADER_MIDDLEWARE = (
    "floodsite.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.security.SecurityMiddleware",
)


def _no_response(request: HttpRequest) -> HttpResponse:
    raise AssertionError("only process_response of the header middleware is used")


def _common_checks_pass(request: HttpRequest) -> bool:
    """What CommonMiddleware checks before any view: the User-Agent against
    DISALLOWED_USER_AGENTS, the Host against ALLOWED_HOSTS, and PREPEND_WWW.

    False sends the request down the middleware list, where Django refuses it exactly as it
    refuses any other URL (403, 400 with its security log line, or the redirect), so the
    fast path never answers a request the rest of the site would not.
    """
    user_agent = request.META.get("HTTP_USER_AGENT")
    if user_agent is not None and any(
        pattern.search(user_agent) for pattern in settings.DISALLOWED_USER_AGENTS
    ):
        return False
    try:
        host = request.get_host()
    except DisallowedHost:
        return False
    return not (settings.PREPEND_WWW and host and not host.startswith("www."))


class FastPathMiddleware:
    """First in MIDDLEWARE: sends `POST /api/v1/predictions/` with a token to ``handle``.

    What it answers it also shapes itself, with the code of the middleware below it: the
    request id and log line (floodsite.middleware), the request metrics (floodsite.metrics),
    and the headers of the security, frame-options and CSP middleware, worked out once per
    (HTTPS or not, status) by letting those middleware shape a blank response. So its answers
    carry exactly what the same answer from the view would, without the request passing
    through the nine middleware only browser pages need. Anything it declines, and every other
    request, continues down the middleware list untouched.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._path = reverse("api-predictions")
        # The metrics label the answer by URL pattern, as if the URL had been resolved.
        self._match = resolve(self._path)
        self._shapers = [
            import_string(path)(_no_response)
            for path in _HEADER_MIDDLEWARE
            if path in settings.MIDDLEWARE
        ]
        self._headers: dict[tuple[bool, int], list[tuple[str, str]]] = {}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method == "POST"
            and request.path_info == self._path
            and request.META.get("HTTP_AUTHORIZATION", "").startswith("Token ")
            # SecurityMiddleware answers plain HTTP with a redirect to HTTPS when told to.
            and not (settings.SECURE_SSL_REDIRECT and not request.is_secure())
            and _common_checks_pass(request)
        ):
            response = self._answer(request)
            if response is not None:
                return response
        return self.get_response(request)

    def _answer(self, request: HttpRequest) -> HttpResponse | None:
        started = time.perf_counter()
        request_begin(request)
        try:
            try:
                response = handle(request)
            except DatabaseError:
                # Nothing was written; the view meets the same error and answers it (503).
                response = None
            except Exception as exc:  # answered as Django answers any view's
                response = response_for_exception(request, exc)
            if response is None:
                return None
            request.resolver_match = self._match
            for name, value in self._shaping_headers(request, response.status_code):
                if name not in response:
                    response[name] = value
            request_end(request, response, started)
            metrics.request_observed(request, response, time.perf_counter() - started)
            return response
        finally:
            structlog.contextvars.clear_contextvars()

    def _shaping_headers(self, request: HttpRequest, status: int) -> list[tuple[str, str]]:
        """What the header middleware add to a JSON answer of this status on this scheme."""
        key = (request.is_secure(), status)
        headers = self._headers.get(key)
        if headers is None:
            probe = HttpResponse(status=status, content_type="application/json")
            before = {name.lower() for name in probe.headers}
            for shaper in self._shapers:
                probe = shaper.process_response(request, probe)
            headers = [(name, value) for name, value in probe.items() if name.lower() not in before]
            self._headers[key] = headers
        return headers
