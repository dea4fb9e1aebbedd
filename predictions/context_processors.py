"""Template context shared by every page: finished batch jobs, open monitoring alerts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from predictions import monitoring
from predictions.models import FINISHED_STATUSES, BatchJob


def batch_notices(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    finished = BatchJob.objects.filter(
        owner=user, notified=False, status__in=FINISHED_STATUSES
    ).order_by("-finished_at")[:3]
    return {"finished_batches": list(finished)}


def monitoring_alerts(request: HttpRequest) -> dict[str, Any]:
    """Open alerts for the banner, shown to staff and auditors only.

    Lazy: the permission check and the one query (the newest open alerts with a window count)
    run only when a template reads the banner, so htmx fragments cost nothing.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def banner() -> dict[str, Any]:
        if not monitoring.user_can_monitor(user):
            return {"total": 0, "alerts": []}
        return monitoring.alert_banner_get()

    return {"alert_banner": SimpleLazyObject(banner)}
