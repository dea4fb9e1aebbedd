"""Celery tasks of the model registry: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

# The audit log (the retraining data) belongs to predictions; a task is an entry point like a
# view, so it may call a predictions service.
from predictions.retraining import retrain_job_run


@shared_task(acks_late=True)
def retrain_job_run_task(job_id: int) -> None:
    """Retrain from the audit log for a RetrainJob queued from admin.

    Not retried automatically: a retraining that failed says why on its job page, and a
    redelivered message for a job that already ended does nothing.
    """
    retrain_job_run(job_id=job_id)
