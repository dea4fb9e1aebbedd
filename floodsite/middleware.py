"""Request-scoped plumbing: the request id carried by every log line and response."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

import structlog
from csp import middleware as csp_middleware
from csp.constants import HEADER as CSP_HEADER
from csp.constants import HEADER_REPORT_ONLY as CSP_HEADER_RO
from csp.utils import build_policy
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept only when it cannot smuggle anything into logs or headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

logger = structlog.get_logger("floodsite.request")


def request_id_from(request: HttpRequest) -> str:
    """The caller's request id when it is sane, else a fresh one."""
    # From META: request.headers would build a dict of every header on every request.
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    if _SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def request_begin(request: HttpRequest) -> None:
    """Give the request its id and bind it to the logging context of this thread.

    The context is clean here: the request before it on this thread cleared it when it ended
    (RequestIDMiddleware clears in ``finally``), and clearing walks every context variable of
    the thread (most of them Django's).
    """
    request_id = request_id_from(request)
    request.request_id = request_id  # type: ignore[attr-defined]
    structlog.contextvars.bind_contextvars(request_id=request_id)


def request_end(request: HttpRequest, response: HttpResponse, started: float) -> None:
    """Return the id in the response and log the one line of the request."""
    response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
    logger.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


class RequestIDMiddleware:
    """Binds a request id to the logging context, returns it, and logs one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_begin(request)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            request_end(request, response, started)
            return response
        finally:
            structlog.contextvars.clear_contextvars()


# Per-view policy changes django-csp's decorators attach to a response.
_CSP_OVERRIDES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)


class CSPMiddleware(csp_middleware.CSPMiddleware):
    """django-csp, with the site-wide policy built once per process instead of per response.

    The site uses no nonces, so most responses carry the same header; a response with a
    per-view change (csp_update and friends) or a request that asked for a nonce takes
    django-csp's own path.
    """

    _policies: tuple[str, str] | None = None

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in _CSP_OVERRIDES
        ):
            return super().process_response(request, response)
        if response.status_code in (500, 404) and settings.DEBUG:
            return response
        policies = self._policies
        if policies is None:
            blank = csp_middleware.PolicyParts()
            policies = type(self)._policies = (
                build_policy(**asdict(blank)),
                build_policy(**asdict(blank), report_only=True),
            )
        enforced, report_only = policies
        for header, policy, setting, exempt in (
            (CSP_HEADER, enforced, "CONTENT_SECURITY_POLICY", "_csp_exempt"),
            (CSP_HEADER_RO, report_only, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro"),
        ):
            if not policy or header in response or getattr(response, exempt, False):
                continue
            prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES") or ()
            if not request.path_info.startswith(tuple(prefixes)):
                response[header] = policy
        request.csp_nonce = csp_middleware.CheckableLazyObject(  # type: ignore[attr-defined]
            self._csp_nonce_post_response
        )
        return response
