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

``prediction_collection`` is the view at that URL: inside the ordinary middleware chain (so the
Host and User-Agent checks, request id, log line, metrics and security headers are Django's and
the project's own middleware, on this path as on every other), it tries ``handle`` for a POST and
hands everything it declines to the DRF view, which also documents the endpoint.
"""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework import exceptions as drf_exceptions

from accounts.authentication import (
    ApiTokenAuthentication,
    api_token_still_valid,
    forget_checked_token,
)
from accounts.roles import PREDICT
from floodsite.db import GuardFailed
from floodsite.exceptions import ApplicationError, error_body
from floodsite.rest import ScopedThrottle, client_ip
from predictions.api.views import PredictionCollectionApi, prediction_to_dict
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
    """Compact UTF-8 JSON as DRF's JSONRenderer writes it, with the view's Allow.

    orjson writes it many times faster than the standard library (formatting the floats is
    most of the work). The bytes are the same but
    for exponents (orjson writes 1e-7 where Python writes 1e-07), which parse to the same
    numbers. Every number here comes from validated, finite inputs, so orjson's null for NaN
    never applies. numpy scalars are written as numbers, as DRF's encoder writes them.
    """
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    response = HttpResponse(content, status=status, content_type="application/json")
    response["Allow"] = _ALLOW
    return response


_FULL_VIEW = PredictionCollectionApi.as_view()


def prediction_collection(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """`/api/v1/predictions/`: a plain single prediction answered by ``handle``, else DRF."""
    if request.method == "POST":
        try:
            response = handle(request)
        except DatabaseError:
            # Nothing was written; the DRF view meets the same error and answers it (503).
            response = None
        if response is not None:
            return response
    return _FULL_VIEW(request, *args, **kwargs)


# The DRF view's attributes: csrf_exempt (a token POST carries no CSRF cookie; DRF enforces CSRF
# itself for session sign-ins) and cls/initkwargs, from which drf-spectacular documents the URL.
update_wrapper(prediction_collection, _FULL_VIEW, assigned=())
