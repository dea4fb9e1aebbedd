"""Context that passes through with a prediction: what it may hold and how much of it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.conf import settings

from floodsite.exceptions import ApplicationError

_SCALARS = (str, int, float, bool, type(None))


def context_size(context: Mapping[str, Any]) -> int:
    """Bytes of the context as compact JSON, the measure CONTEXT_MAX_BYTES limits."""
    return len(orjson.dumps(context))


def context_problem(context: Mapping[str, Any]) -> tuple[str, str]:
    """(field, reason) when ``context`` is past a limit or holds what is not a plain value."""
    if len(context) > settings.CONTEXT_MAX_KEYS:
        return "context", (
            f"at most {settings.CONTEXT_MAX_KEYS} entries (CONTEXT_MAX_KEYS), got {len(context)}"
        )
    for key, value in context.items():
        if not isinstance(key, str) or not key.strip():
            return "context", "every key must be non-blank text"
        if not isinstance(value, _SCALARS) or (
            isinstance(value, float) and value != value  # NaN is no JSON value
        ):
            return f"context.{key}", "must be text, a number, true, false or null"
    try:
        size = context_size(context)
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits
        return "context", "holds a number JSON cannot carry exactly; send it as text"
    if size > settings.CONTEXT_MAX_BYTES:
        return "context", (
            f"{size:,} bytes as JSON; at most {settings.CONTEXT_MAX_BYTES:,} (CONTEXT_MAX_BYTES)"
        )
    return "", ""


def context_checked(context: Any) -> dict[str, Any] | None:
    """The context to keep on the audit row (None when none was sent), or a 400 naming why."""
    if context is None:
        return None
    if not isinstance(context, Mapping):
        raise ApplicationError(
            "The context must be an object of values.",
            fields={"context": "must be an object of text, numbers, true, false or null"},
            code="invalid_context",
        )
    field, reason = context_problem(context)
    if field:
        raise ApplicationError(
            f"The context is refused: {reason}.", fields={field: reason}, code="invalid_context"
        )
    return dict(context) or None
