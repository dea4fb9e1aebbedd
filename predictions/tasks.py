"""Celery tasks of the predictions app: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from predictions import batches

# Transient trouble (database restarting, connection dropped) is retried with backoff;
# bad data never raises here, it becomes row errors.
# (Not DatabaseError as a whole: a DataError or IntegrityError fails the same way every time.)
TRANSIENT = (OperationalError, InterfaceError, OSError)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


class BatchTask(Task):
    """A batch task that fails for good (not a retried transient error) fails its job."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        if not job_id:
            return
        if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
            # Celery also calls this (in the worker's main process) for a hard time limit.
            index = args[1] if len(args) > 1 else kwargs.get("index")
            batches.batch_fail_timed_out(job_id=job_id, index=index, seconds=self.soft_time_limit)
        else:
            batches.batch_fail(job_id=job_id, error=exc)


@shared_task(base=BatchTask, acks_late=True, **RETRY)
def batch_split_task(job_id: str) -> None:
    indexes = batches.batch_split(job_id=job_id)
    for index in indexes:
        batch_chunk_task.apply_async(args=[job_id, index])


@shared_task(
    base=BatchTask,
    acks_late=True,
    soft_time_limit=settings.BATCH_CHUNK_SOFT_TIME_LIMIT,
    time_limit=settings.BATCH_CHUNK_TIME_LIMIT,
    **RETRY,
)
def batch_chunk_task(job_id: str, index: int) -> None:
    if batches.batch_chunk_process(job_id=job_id, index=index):
        batch_finalize_task.apply_async(args=[job_id])


@shared_task(base=BatchTask, acks_late=True, **RETRY)
def batch_finalize_task(job_id: str) -> None:
    batches.batch_finalize(job_id=job_id)


@shared_task
def batch_resume_stalled_task() -> None:
    """Beat: re-queue what a lost worker or message left undone (every chunk is idempotent)."""
    for job_id, pending in batches.batch_resume_stalled():
        if pending:
            for index in pending:
                batch_chunk_task.apply_async(args=[job_id, index])
        else:
            batch_split_task.apply_async(args=[job_id])
