"""DRF building blocks every app's API shares: the JSON parser, pagination, strict input."""

from __future__ import annotations

import io
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers
from rest_framework.exceptions import APIException, ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.throttling import ScopedRateThrottle

logger = structlog.get_logger(__name__)


# Half of a UTF-16 surrogate pair: the JSON escape \ud800 decodes to one, but no UTF-8 text
# (a response, a log line, a database column) can hold it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _decoded_problem(value: Any, limit: int) -> str | None:
    """What makes decoded JSON unusable (nesting past ``limit``, an unpaired surrogate in a
    key or string), or None; one walk that stops at the first problem."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return f"nesting deeper than {limit} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if _has_surrogate(key):
                    return f"the key {key!r} holds an unpaired UTF-16 surrogate"
                stack.append((child, level + 1))
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, str) and _has_surrogate(item):
            return f"the string {item[:40]!r} holds an unpaired UTF-16 surrogate"
    return None


class RequestTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "The request body is too large."


class StrictJSONParser(JSONParser):
    """JSON only; NaN/Infinity literals, deep nesting, non-UTF-8 bodies and unpaired surrogates
    are 400s, not 500s.

    The body is read with a cap (DATA_UPLOAD_MAX_MEMORY_SIZE): DRF streams JSON straight from
    the socket, which would otherwise bypass Django's own limit.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not UTF-8.") from None
        problem = _decoded_problem(data, settings.API_MAX_JSON_DEPTH)
        if problem is not None:
            raise ParseError(f"JSON parse error - {problem}.")
        return data


class Pagination(PageNumberPagination):
    """`?page=N&page_size=M` (at most 500 a page)."""

    page_size_query_param = "page_size"
    max_page_size = 500


class StrictSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not declare (no mass assignment)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: "not accepted: unknown or read-only field" for name in unknown}
                )
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """A CharField that takes only JSON text: DRF's would turn a number into its digits."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextRegexField(serializers.RegexField):
    """A RegexField that takes only JSON text, as TextField."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSerializerScheme(OpenApiSerializerExtension):
    """Documents what StrictSerializer enforces: a request body has no undeclared properties."""

    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


def client_ip(request) -> str | None:
    """The caller's address, the one definition for throttles, django-axes, the audit row and
    /metrics: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT = N proxies the Nth address from the
    right of X-Forwarded-For (the peer the outermost trusted proxy saw). None if no address.

    Everything left of that is the client's own text: with N = 0 the header is ignored.
    """
    address = request.META.get("REMOTE_ADDR", "")
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "") if proxies else ""
    if forwarded.strip():
        hops = [hop.strip() for hop in forwarded.split(",")]
        # Fewer hops than proxies: the request skipped the outer ones, and the leftmost is the
        # peer of the first trusted proxy it did pass (DRF's NUM_PROXIES reads it the same way).
        address = hops[-min(proxies, len(hops))]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "example": "invalid_input"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "What to fix, by field name.",
                    "additionalProperties": True,
                },
            },
        },
        "request_id": {"type": "string", "nullable": True},
    },
}
ERROR_STATUSES = {
    "400": "Invalid input; `fields` names what to fix.",
    "401": "Missing, wrong, expired or revoked credentials.",
    "403": "Not allowed.",
    "404": "Not found (or not yours).",
    "405": "Method not allowed.",
    "406": "Cannot answer in the requested format.",
    "413": "Request body too large.",
    "415": "Send application/json.",
    "429": "Too many requests; see Retry-After.",
    "503": "The database or the production model is unavailable.",
}
WRITE_ERROR_STATUSES = {
    "409": "Conflicts with what is recorded.",
    "422": "Idempotency-Key reused with a different body.",
}


def add_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular hook: every operation documents the one error body for its 4xx/5xx."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            statuses = dict(ERROR_STATUSES)
            if method in ("post", "put", "patch", "delete"):
                statuses.update(WRITE_ERROR_STATUSES)
            responses = operation.setdefault("responses", {})
            for code, description in statuses.items():
                responses.setdefault(
                    code,
                    {"description": description, "content": {"application/json": {"schema": ref}}},
                )
    return result


class OncePerInterval:
    """Says when a repeated event is due to be logged again: at most once per ``seconds``,
    with how many occurrences were held back since the last report."""

    def __init__(self, *, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held_back = 0

    def due(self) -> tuple[bool, int]:
        """(log now?, occurrences held back since the last report)."""
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self.seconds:
                self._held_back += 1
                return False, 0
            held_back, self._held_back, self._last = self._held_back, 0, now
            return True, held_back


THROTTLE_OUTAGE_LOG = OncePerInterval(seconds=60)


class ScopedThrottle(ScopedRateThrottle):
    """Per-user, per-scope rates counted in the shared cache; open when the cache is down.

    Counts are fixed windows: one counter per (scope, user or address, window), bumped with an
    atomic incr (the first request of a window creates it with add), so a request costs one
    cache call, the same at 10 or 10,000 a minute. (DRF's own throttle
    stores a timestamp per request of the last window and rewrites the whole list on every
    call, which grows with the rate.) A client may send up to twice the rate across a window
    boundary; Retry-After is the time until its window ends.

    Throttling is a cost control, not security: an unreachable Redis must not turn every API
    call into a 500, so the request goes through and the outage is logged.
    """

    def allow_request(self, request, view) -> bool:
        try:
            return self._allow(request, view)
        except Exception as exc:  # the cache client's connection errors have no common base
            # Once per interval and process: a line per request buried the logs (thousands a
            # second) while saying nothing new.
            due, held_back = THROTTLE_OUTAGE_LOG.due()
            if due:
                logger.warning(
                    "throttle_cache_unavailable",
                    error=str(exc)[:200],
                    repeats_not_logged=held_back,
                    next_report_seconds=THROTTLE_OUTAGE_LOG.seconds,
                )
            return True

    def _allow(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        limit, duration = self.parse_rate(self.rate)
        self.num_requests, self.duration = limit, duration  # wait() reads them
        if limit is None or duration is None:  # no rate for this scope
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        self.now = self.timer()
        window = int(self.now // duration)
        self.window_ends = (window + 1) * duration
        key = f"{ident}_{window}"
        try:
            # Every request but the first of a window finds its counter: one cache call.
            count = self.cache.incr(key)
        except ValueError:  # the first request of this window
            if self.cache.add(key, 1, timeout=duration + 1):
                return True
            try:
                count = self.cache.incr(key)  # another request opened the window first
            except ValueError:  # ... and it expired in between: a new window
                return True
        return count <= limit

    def get_ident(self, request) -> str:
        # A client without a token is counted by its address as client_ip reads it, the same
        # for every throttle, the lockout and the audit row.
        return client_ip(request) or "unknown"

    def wait(self) -> float:
        return max(self.window_ends - self.now, 1.0)
