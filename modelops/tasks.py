"""Celery tasks of model operations: thin wrappers that take ids and call one service.

Both keep the names they were registered under before they moved here (the beat schedule in
settings and messages already queued use them).
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from modelops.retraining import retrain_job_run
from modelops.services import monitoring_report_create


@shared_task(name="predictions.tasks.monitoring_check_task")
def monitoring_check_task(window_minutes: int | None = None) -> int:
    """Beat: one monitoring check over the last MONITOR_WINDOW_MINUTES; returns the report id."""
    report = monitoring_report_create(
        window_minutes=window_minutes or settings.MONITOR_WINDOW_MINUTES
    )
    return report.pk


@shared_task(name="mlcore.tasks.retrain_job_run_task", acks_late=True)
def retrain_job_run_task(job_id: int) -> None:
    """Retrain from the audit log for a RetrainJob queued from admin.

    Not retried automatically: a retraining that failed says why on its job page, and a
    redelivered message for a job that already ended does nothing.
    """
    retrain_job_run(job_id=job_id)
