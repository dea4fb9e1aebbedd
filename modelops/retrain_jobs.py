"""Retraining jobs: queue one on a worker (the admin's "Retrain from the audit log").

The worker runs it with ``modelops.retraining.retrain_job_run`` (``modelops.tasks``).
"""

from __future__ import annotations

import structlog

from accounts.models import User
from floodsite.exceptions import ApplicationError
from mlcore.selectors import model_version_get_production
from modelops.models import RetrainJob
from modelops.tasks import retrain_job_run_task

logger = structlog.get_logger(__name__)


def retrain_job_submit(
    *, name: str, include_original: bool, min_outcomes: int, user: User
) -> RetrainJob:
    """Queue a retraining on a worker; a broker that cannot be reached leaves no job behind."""
    if min_outcomes < 0:
        raise ApplicationError(
            "The minimum number of outcomes cannot be negative.",
            fields={"min_outcomes": "must be 0 or more"},
        )
    model_version_get_production(name=name)  # a clear error now rather than a failed job
    job = RetrainJob.objects.create(
        name=name,
        include_original=include_original,
        min_outcomes=min_outcomes,
        created_by=user,
        step="waiting for a worker",
    )
    try:
        retrain_job_run_task.apply_async(args=[job.pk], retry=False)
    except Exception as exc:  # the broker's client raises several types for "unreachable"
        logger.error("retrain_queue_unavailable", job=job.pk, error=str(exc))
        RetrainJob.objects.filter(pk=job.pk).delete()
        raise ApplicationError(
            "The task queue is unavailable; nothing was queued. Try again in a moment.",
            code="queue_unavailable",
            status_code=503,
        ) from exc
    logger.info("retrain_queued", job=job.pk, name=name)
    return job
