"""What a locked-out sign-in gets: the lockout page, or the API's JSON error with Retry-After."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from floodsite.exceptions import error_body


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' AXES_LOCKOUT_CALLABLE."""
    cool_off = get_cool_off(request)
    seconds = int(cool_off.total_seconds()) if cool_off else None
    if request.path.startswith("/api/"):
        response = JsonResponse(
            error_body(
                request,
                code="locked_out",
                message="Too many wrong passwords for this account; try again later.",
                fields={"password": "too many failed attempts"},
            ),
            status=429,
        )
        if seconds:
            response["Retry-After"] = str(seconds)
        return response
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "username": get_client_username(request, credentials) or "",
        "cooloff_timedelta": cool_off,
    }
    return render(request, "accounts/locked_out.html", context, status=429)
