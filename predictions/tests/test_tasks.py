"""Batch jobs on real Celery workers (separate processes), including a worker killed mid-job.

The broker is Redis when REDIS_URL is set (CI), else kombu's filesystem broker; the database
is the test database, shared with the workers through their environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory, token_for
from mlcore.engine import synthetic
from predictions.models import BatchJob, BatchStatus, Prediction

ROOT = Path(__file__).resolve().parents[2]
CHUNK_ROWS = 1_500


def worker_env(media_root: Path) -> dict[str, str]:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = f"{db['USER']}:{db['PASSWORD']}@" if db["PASSWORD"] else f"{db['USER']}@"
        database_url = f"postgres://{user}{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        database_url = f"sqlite:///{db['NAME']}"
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url,
        "FLOODSITE_VAR_DIR": str(settings.VAR_DIR),
        "DJANGO_MEDIA_ROOT": str(media_root),
        "BATCH_CHUNK_ROWS": str(CHUNK_ROWS),
        "BATCH_STALLED_SECONDS": "4",
        # A killed worker's chunks are queued again once their lease runs out.
        "BATCH_CHUNK_LEASE_SECONDS": "5",
        "BATCH_RESUME_INTERVAL_SECONDS": "2",
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "OMP_NUM_THREADS": "1",
        "LOG_LEVEL": "WARNING",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


def start_worker(
    env: dict[str, str], log: Path, *, beat: bool = False, loglevel: str = "WARNING"
) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "floodsite",
        "worker",
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        loglevel,
    ]
    if beat:
        command += ["--beat", "--schedule", str(log.with_suffix(".beat"))]
    handle = open(log, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for(condition, *, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-4000:]}")


@pytest.fixture
def clean_broker():
    """Leftover messages from other tests must not reach these workers."""
    if settings.REDIS_URL:
        import redis

        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    else:
        for folder in ("queue", "processed"):
            for message in (settings.CELERY_BROKER_DIR / folder).glob("*"):
                message.unlink()


@pytest.fixture
def batch_client(transactional_db):
    user = UserFactory(username="batcher")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def submit(client: APIClient, rows: int, path: Path) -> BatchJob:
    frame = synthetic.generate(rows, seed=12).drop(columns="flooded").astype(object)
    frame.loc[10, "slope_deg"] = "unknown"  # one bad row: the job is "partially succeeded"
    frame.to_csv(path, index=False)
    with open(path, "rb") as handle:
        response = client.post("/api/v1/batches/", {"file": handle}, format="multipart")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith(f"/api/v1/batches/{response.json()['id']}/")
    return BatchJob.objects.get(pk=response.json()["id"])


@pytest.mark.slow
def test_a_worker_scores_a_submitted_file(
    batch_client, production_model, clean_broker, tmp_path, settings
):
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env(Path(settings.MEDIA_ROOT)), log)
    try:
        job = submit(batch_client, 4_000, tmp_path / "sites.csv")
        wait_for(
            lambda: BatchJob.objects.get(pk=job.pk).finished, timeout=120, what="the job", log=log
        )
    finally:
        stop(worker)
    job.refresh_from_db()
    assert job.status == BatchStatus.PARTIAL
    assert (job.total_rows, job.failed_rows) == (4_000, 1)
    assert Prediction.objects.filter(batch=job).count() == 3_999
    detail = batch_client.get(f"/api/v1/batches/{job.pk}/").json()
    assert detail["percent"] == 100 and detail["rows_per_second"] > 0
    results = batch_client.get(detail["results_url"])
    lines = b"".join(results.streaming_content).decode().splitlines()
    assert len(lines) == 1 + 3_999
    errors = b"".join(batch_client.get(detail["errors_url"]).streaming_content).decode()
    assert "11,slope_deg,must be a finite number" in errors


@pytest.mark.slow
def test_a_worker_killed_mid_job_leaves_exactly_one_audit_row_per_row(
    batch_client, production_model, clean_broker, tmp_path, settings
):
    rows = 40 * CHUNK_ROWS
    log = tmp_path / "worker.log"
    env = worker_env(Path(settings.MEDIA_ROOT))
    first = start_worker(env, log)
    try:
        job = submit(batch_client, rows, tmp_path / "sites.csv")
        wait_for(
            lambda: BatchJob.objects.get(pk=job.pk).chunks_done >= 3,
            timeout=120,
            what="the first chunks",
            log=log,
        )
    finally:
        stop(first, signal.SIGKILL)  # no warm shutdown: messages in flight are unacknowledged
    job.refresh_from_db()
    assert not job.finished, "the job finished before the kill; make it longer"
    killed_at = job.chunks_done

    second = start_worker(env, log, beat=True)
    try:
        wait_for(
            lambda: BatchJob.objects.get(pk=job.pk).finished, timeout=240, what="the job", log=log
        )
    finally:
        stop(second)
    job.refresh_from_db()
    assert job.status == BatchStatus.PARTIAL, job.error
    assert job.chunks_done == job.chunks_total == 40 and killed_at < 40
    logged = Prediction.objects.filter(batch=job)
    assert logged.count() == rows - 1
    assert logged.values("batch_row").distinct().count() == rows - 1
    assert job.processed_rows == rows


@pytest.mark.slow
def test_a_broker_that_is_down_at_submission_is_a_503_and_leaves_no_job(
    batch_client, production_model, tmp_path, settings
):
    """The submitting process talks to a Redis that is not there (nothing listens on port 1)."""

    path = tmp_path / "sites.csv"
    synthetic.generate(50, seed=3).drop(columns="flooded").to_csv(path, index=False)
    token = batch_client._credentials["HTTP_AUTHORIZATION"]
    env = {
        **worker_env(Path(settings.MEDIA_ROOT)),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DJANGO_ALLOWED_HOSTS": "testserver",
    }
    script = (
        "import django, json; django.setup();"
        "from rest_framework.test import APIClient;"
        f"c = APIClient(); c.credentials(HTTP_AUTHORIZATION={token!r});"
        f"r = c.post('/api/v1/batches/', {{'file': open({str(path)!r}, 'rb')}},"
        " format='multipart');"
        "print(r.status_code); print(r.content.decode())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "floodsite.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.count("\n") >= 1, result.stdout + result.stderr[-3000:]
    status, body = result.stdout.strip().split("\n", 1)
    assert status == "503", result.stdout + result.stderr
    assert '"code": "queue_unavailable"' in body.replace('":"', '": "')
    assert not BatchJob.objects.exists()
    assert not list((Path(settings.MEDIA_ROOT) / "batches").glob("*/input.csv"))
