"""Template context shared by every page: finished batch jobs."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from predictions.models import FINISHED_STATUSES, BatchJob


def batch_notices(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    finished = BatchJob.objects.filter(
        owner=user, notified=False, status__in=FINISHED_STATUSES
    ).order_by("-finished_at")[:3]
    return {"finished_batches": list(finished)}
