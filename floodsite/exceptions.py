"""The one error contract: ApplicationError, the DRF exception handler and the error pages.

Every 4xx/5xx from the API has the body
``{"error": {"code": ..., "message": ..., "fields": {...}}, "request_id": ...}``;
pages render ``templates/<status>.html`` with the same message.
"""

from __future__ import annotations

import sys
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template import loader
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

logger = structlog.get_logger(__name__)

DATABASE_UNAVAILABLE = "The database is unavailable. Please try again in a moment."


class ApplicationError(Exception):
    """An error a user can act on: a message, the fields to fix and an HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, Any] | None = None,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.code = code
        self.status_code = status_code


def error_body(
    request: HttpRequest | None, *, code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON error body shared by the API handler and the plain-Django fallbacks."""
    return {
        "error": {"code": code, "message": message, "fields": fields or {}},
        "request_id": getattr(request, "request_id", None),
    }


def _flatten(detail: Any) -> Any:
    """DRF's nested ErrorDetail lists/dicts to plain strings (one message per field)."""
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        flat = [_flatten(item) for item in detail]
        if all(isinstance(item, str) for item in flat):
            return " ".join(flat)
        return flat
    return str(detail)


def _is_database_outage(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError)


def _request_part(exc: Exception) -> str | None:
    """What to fix when the error is about the request as a whole rather than one field."""
    if isinstance(exc, drf_exceptions.ParseError) or getattr(exc, "status_code", None) == 413:
        return "body"
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return "Content-Type"
    if isinstance(exc, drf_exceptions.NotAcceptable):
        return "Accept"
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every API error in the one format."""
    request = context.get("request")
    if isinstance(exc, ApplicationError):
        return Response(
            error_body(request, code=exc.code, message=exc.message, fields=exc.fields),
            status=exc.status_code,
        )
    if _is_database_outage(exc):
        logger.error("database_unavailable", error=str(exc))
        return Response(
            error_body(request, code="database_unavailable", message=DATABASE_UNAVAILABLE),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body(
                request,
                code="too_large",
                message="The request body is too large.",
                fields={"body": f"at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
            ),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        message = "Some fields are invalid: " + ", ".join(sorted(fields)) + "."
        code = "invalid"
    else:
        fields = {}
        message = _flatten(getattr(exc, "detail", str(exc)))
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, drf_exceptions.APIException):
            codes = exc.get_codes()
            if isinstance(codes, str):
                code = codes
        part = _request_part(exc)
        if part is not None:
            fields = {part: str(message)}
    response.data = error_body(request, code=code, message=str(message), fields=fields)
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get(
        "Accept", ""
    )


def _error_response(
    request: HttpRequest, *, status_code: int, code: str, message: str
) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body(request, code=code, message=message), status=status_code)
    return render(request, f"{status_code}.html", {"message": message}, status=status_code)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _error_response(
        request, status_code=404, code="not_found", message="This page does not exist."
    )


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _error_response(
        request,
        status_code=403,
        code="permission_denied",
        message="You do not have permission to see this page.",
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database outage is a 503 with a plain message; the rest a 500."""
    exc = sys.exc_info()[1]
    if exc is not None and _is_database_outage(exc):
        logger.error("database_unavailable", error=str(exc))
        return _plain_503(request)
    if _wants_json(request):
        return JsonResponse(
            error_body(request, code="server_error", message="Internal server error."),
            status=500,
        )
    # No context processors here: the failure may be in one of them (or in the database).
    return HttpResponse(loader.get_template("500.html").render({}), status=500)


def _plain_503(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            error_body(request, code="database_unavailable", message=DATABASE_UNAVAILABLE),
            status=503,
        )
    body = loader.get_template("503.html").render({"message": DATABASE_UNAVAILABLE})
    response = HttpResponse(body, status=503)
    response["Retry-After"] = "30"
    return response


class ApplicationErrorMiddleware:
    """Pages: an ApplicationError becomes its status page with the message; a database outage
    a 503 page instead of a 500. (The API renders both through api_exception_handler.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApplicationError):
            status_code = exception.status_code
            template = status_code if status_code in (403, 404, 503) else 400
            if _wants_json(request):
                return JsonResponse(
                    error_body(
                        request,
                        code=exception.code,
                        message=exception.message,
                        fields=exception.fields,
                    ),
                    status=status_code,
                )
            return render(
                request, f"{template}.html", {"message": exception.message}, status=status_code
            )
        if isinstance(exception, DatabaseError) and _is_database_outage(exception):
            logger.error("database_unavailable", error=str(exception))
            return _plain_503(request)
        return None
