"""The Celery application; settings come from Django's under the CELERY_ namespace."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "floodsite.settings")

app = Celery("floodsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def _metrics_worker_starting(**kwargs) -> None:
    """A worker's processes write metrics as group "worker" (floodsite/metrics.py); a fresh
    worker clears that group's old files on this host before its pool is forked."""
    from floodsite import metrics

    metrics.process_group_start("worker")


@signals.import_modules.connect
def _local_state_ready(**kwargs) -> None:
    """A worker or beat (both import the task modules first) without its secret key or local
    folders (a local run before `manage.py setup_site`) stops with one line saying so, not with
    the filesystem result backend's traceback."""
    from floodsite.local_state import local_state_require

    local_state_require()


@signals.worker_process_shutdown.connect
def _metrics_worker_process_gone(pid=None, **kwargs) -> None:
    from floodsite import metrics

    metrics.process_dead(pid or os.getpid())
