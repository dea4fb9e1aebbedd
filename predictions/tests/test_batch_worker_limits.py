"""Hostile batch files, cancel and time limits on a real Celery worker, with its memory measured.

The worker is started as in test_tasks.py (Redis and PostgreSQL in CI, else the filesystem
broker and SQLite). The 100 MB files are written into tmp_path by the test, never committed.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import UploadedFile

from accounts.tests.factories import UserFactory
from mlcore.engine import synthetic
from predictions import batches
from predictions.models import BatchChunk, BatchJob, BatchStatus, Prediction
from predictions.tests.test_tasks import (  # noqa: F401 (clean_broker is a fixture)
    clean_broker,
    start_worker,
    stop,
    wait_for,
    worker_env,
)

MB = 1_000_000
# Peak resident memory allowed to one pool process over the whole corpus: the process with
# Django, pandas and the model loaded, plus a bounded chunk. The first report reached 3.7 GB.
POOL_PEAK_LIMIT_KB = 600_000


def good_lines(count: int) -> tuple[bytes, list[bytes]]:
    text = synthetic.generate(count, seed=21).drop(columns="flooded").to_csv(index=False)
    header, *lines = text.encode().splitlines(keepends=True)
    return header, lines


def write_file(path: Path, parts: list[bytes | tuple[bytes, int]]) -> Path:
    """Concatenate parts; (piece, n) writes piece n times without building it in memory."""
    with open(path, "wb") as out:
        for part in parts:
            if isinstance(part, tuple):
                piece, times = part
                for _ in range(times):
                    out.write(piece)
            else:
                out.write(part)
    return path


def submit_path(owner, path: Path) -> BatchJob:
    with open(path, "rb") as handle:
        upload = UploadedFile(handle, name=path.name, size=path.stat().st_size)
        return batches.batch_create(owner=owner, source="api", upload=upload)


def pool_processes(worker_pid: int) -> list[int]:
    """The prefork pool's processes: the worker's children."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker_pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert found is not None, status
    return int(found.group(1))


def error_lines(job: BatchJob) -> list[list[str]]:
    with open(job.error_file.path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))[1:]


@pytest.fixture
def owner(transactional_db):
    return UserFactory(username="hostile")


@pytest.mark.slow
@pytest.mark.usefixtures("clean_broker")
def test_hostile_files_end_in_bounded_time_and_memory_on_a_real_worker(
    owner, production_model, tmp_path, settings
):
    header, lines = good_lines(6)
    rest = b"1," * 14 + b"1\n"  # 15 cells: with the hostile one, the header's 16
    files = {
        # The report: 2 MB, the first data row 1,000,000 cells wide.
        "wide-first": [header, b"1," * 999_999 + b"1\n", *lines],
        "wide-middle": [header, *lines[:3], b"1," * 999_999 + b"1\n", *lines[3:]],
        # One quoted cell of 100 MB over a million lines, in a record of the right width.
        "quoted-100mb": [
            header,
            *lines[:2],
            b'"',
            (b"9" * 99 + b"\n", MB),
            b'",' + rest,
            *lines[2:],
        ],
        # One line of 100 MB: a cell far over the csv module's field limit.
        "line-100mb": [header, lines[0], (b"7" * MB, 100), b"," + rest, *lines[1:]],
    }
    expected = {
        "wide-first": (1, "has 1,000,000 cells, the header has 16"),
        "wide-middle": (4, "has 1,000,000 cells, the header has 16"),
        "quoted-100mb": (3, "is longer than 65,536 bytes"),
        "line-100mb": (2, "is longer than 65,536 bytes"),
    }
    env = {**worker_env(Path(settings.MEDIA_ROOT)), "CELERY_WORKER_MAX_MEMORY_PER_CHILD": "0"}
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        wait_for(lambda: len(pool_processes(worker.pid)) == 2, timeout=60, what="the pool", log=log)
        pool = pool_processes(worker.pid)
        jobs = {
            name: submit_path(owner, write_file(tmp_path / f"{name}.csv", parts))
            for name, parts in files.items()
        }
        wait_for(
            lambda: all(BatchJob.objects.get(pk=job.pk).finished for job in jobs.values()),
            timeout=180,
            what="every hostile job",
            log=log,
        )
        assert pool_processes(worker.pid) == pool, "a pool process died or was replaced"
        peaks = {pid: peak_rss_kb(pid) for pid in pool}
    finally:
        stop(worker)
    print(f"pool peak RSS (kB): {peaks}")
    assert max(peaks.values()) < POOL_PEAK_LIMIT_KB, peaks
    for name, job in jobs.items():
        job.refresh_from_db()
        bad_row, reason = expected[name]
        assert job.status == BatchStatus.PARTIAL, (name, job.error)
        assert (job.total_rows, job.failed_rows) == (7, 1), name
        assert error_lines(job) == [[str(bad_row), "", reason]], name
        logged = sorted(Prediction.objects.filter(batch=job).values_list("batch_row", flat=True))
        assert logged == [r for r in range(1, 8) if r != bad_row], name


def long_job(owner, tmp_path: Path, rows: int) -> BatchJob:
    path = tmp_path / "long.csv"
    synthetic.generate(rows, seed=22).drop(columns="flooded").to_csv(path, index=False)
    return submit_path(owner, path)


@pytest.mark.slow
@pytest.mark.usefixtures("clean_broker")
def test_cancel_stops_a_running_chunk_at_its_next_block(
    owner, production_model, tmp_path, settings
):
    rows = 80_000
    env = {
        **worker_env(Path(settings.MEDIA_ROOT)),
        "BATCH_CHUNK_ROWS": str(rows),  # one chunk, read in 80 blocks
        "BATCH_BLOCK_ROWS": "1000",
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "worker.log"
    worker = start_worker(env, log, loglevel="INFO")
    try:
        job = long_job(owner, tmp_path, rows)
        leased = BatchChunk.objects.filter(job=job, lease_until__isnull=False)
        wait_for(leased.exists, timeout=120, what="the chunk to start", log=log)
        batches.batch_cancel(job=job)
        # The task hands its lease back when it stops.
        wait_for(lambda: not leased.exists(), timeout=60, what="the chunk to stop", log=log)
    finally:
        stop(worker)
    job.refresh_from_db()
    assert job.status == BatchStatus.CANCELLED
    assert not BatchChunk.objects.get(job=job).done
    assert not Prediction.objects.filter(batch=job).exists()
    stopped = re.search(r"batch_chunk_stopped.*rows_read=(\d+)", log.read_text())
    assert stopped, log.read_text()[-3000:]
    assert int(stopped.group(1)) < rows  # it stopped between blocks, not after the last one


@pytest.mark.slow
@pytest.mark.usefixtures("clean_broker")
def test_a_chunk_past_its_time_limit_fails_the_job_with_a_clear_message(
    owner, production_model, tmp_path, settings
):
    rows = 80_000
    env = {
        **worker_env(Path(settings.MEDIA_ROOT)),
        "BATCH_CHUNK_ROWS": str(rows),
        "BATCH_CHUNK_SOFT_TIME_LIMIT": "1",
        "BATCH_CHUNK_TIME_LIMIT": "30",
    }
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        job = long_job(owner, tmp_path, rows)
        wait_for(
            lambda: BatchJob.objects.get(pk=job.pk).finished, timeout=120, what="the job", log=log
        )
    finally:
        stop(worker)
    job.refresh_from_db()
    assert job.status == BatchStatus.FAILED
    assert job.error.startswith(
        "Scoring stopped: rows 1-80,000 took longer than the 1-second limit for one chunk "
        "(BATCH_CHUNK_SOFT_TIME_LIMIT)"
    ), job.error
    assert not Prediction.objects.filter(batch=job).exists()
    assert not BatchChunk.objects.get(job=job).done
