"""Liveness and readiness probes: /healthz says the process answers, /readyz that it can serve."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def check_broker() -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not queue.is_dir():
            raise OSError(f"broker folder {queue} is missing")
        return "filesystem"
    with Connection(url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return url.split("://", 1)[0]


def check_static() -> str:
    """Production renders every page with hashed static names read from the manifest that
    collectstatic writes; without it each page is a 500, so the site is not ready."""
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return "served from the source folders"
    # The storage reads the manifest once, when the process first uses it: what counts is
    # what this process loaded, not whether the file exists now.
    if not staticfiles_storage.hashed_files:
        manifest = Path(settings.STATIC_ROOT) / staticfiles_storage.manifest_name
        raise FileNotFoundError(
            f"the staticfiles manifest {manifest} is missing or was written after this process "
            "started: run manage.py collectstatic (setup_site does) and restart"
        )
    return f"{len(staticfiles_storage.hashed_files)} files in the manifest"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "broker": check_broker,
    "static": check_static,
}


def readiness_check_register(name: str, check: Callable[[], str]) -> None:
    """Add a component to /readyz: ``check`` returns a detail or raises why it is unusable.

    Apps register theirs when Django starts (mlcore: "model"), since this package imports none.
    """
    CHECKS[name] = check


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every component is usable, else 503 naming each failing one and why."""
    components: dict[str, dict[str, object]] = {}
    failing: list[str] = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail = check()
            components[name] = {"ok": True, "detail": detail}
        except Exception as exc:  # a probe reports every failure; it never raises
            components[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
            failing.append(name)
        components[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    body: dict[str, object] = {"status": "ok" if not failing else "unavailable"}
    body["failing"] = failing
    body["components"] = components
    return JsonResponse(body, status=503 if failing else 200)
