"""Template context shared by every page: the open monitoring alerts banner."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from modelops import selectors


def monitoring_alerts(request: HttpRequest) -> dict[str, Any]:
    """Open alerts for the banner, shown to staff and auditors only.

    Lazy: the permission check and the one query (the newest open alerts with a window count)
    run only when a template reads the banner, so htmx fragments cost nothing.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def banner() -> dict[str, Any]:
        if not selectors.user_can_monitor(user):
            return {"total": 0, "alerts": []}
        return selectors.alert_banner_get()

    return {"alert_banner": SimpleLazyObject(banner)}
