"""The "batch" section of `make bench`: a 1,000,000-row CSV through the batch API and one worker.

The job is submitted through the real API (`POST /api/v1/batches/` with a token, driven
in-process by DRF's APIClient) and scored by ONE Celery worker of concurrency 2
(OMP_NUM_THREADS=1) on PostgreSQL; the clock runs from the 202 to the moment the API shows the
job finished with its results.csv on disk. Then a naive reference does the same work the
tutorial way (pandas read_csv of the whole file, scikit-learn predict_proba, bulk_create in
1,000-row batches) against the same database and audit table, and one chunk is scored again
in-process with a stopwatch on each step, to show where a chunk's time goes.

Two processes share the work. The `make bench` process picks the database and the broker,
runs the driver and writes the block. The driver (`python -m bench.batch --driver RESULT`)
configures Django with the bench's environment, which needs a process of its own: Django is
configured once per process and the api section has already configured this one for its own
(by then dropped) database. All local state (upload, media, worker log, filesystem broker)
lives in var/bench/batch/, wiped at the start of each run.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import io
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/batch.py` as well as `-m bench.batch`
    sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402 (needs ROOT on sys.path)
    Database,
    _machine_busy_s,
    _process_cpu_s,
    _throwaway_postgres,
)

WORK_DIR = ROOT / "var" / "bench" / "batch"
MODEL_NAME = "flood-risk-bench"  # its own registry name: a shared DATABASE_URL keeps its model
BENCH_USERNAME = "bench-batch"
ROWS = 1_000_000
SEED = 31
CONCURRENCY = 2
DEFAULT_CHUNK_ROWS = 20_000  # the product's BATCH_CHUNK_ROWS default
REFERENCE_BATCH_ROWS = 1_000
REFERENCE_REQUEST_ID = "reference-batch"
PROFILE_CHUNKS = 3  # chunks scored in-process under the stopwatch; the median is reported
REDIS_DB = 14  # the bench's own database number on a local Redis, flushed before and after
SAMPLE_S = 0.5
POLL_S = 0.2
WORKER_START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 300
DRIVER_TIMEOUT_S = 600

TARGET_ROWS_PER_S = 35_000
TARGET_RATIO = 2.5
# Pool processes may grow while their first chunks warm up caches; after that the RSS of a
# process that does not leak stays within this much of where it was at a quarter of the run.
FLAT_TOLERANCE_MIB = 32

# The environment as `make bench` started: the api section updates os.environ for its own
# Django setup, and its DATABASE_URL must not look like one the user gave.
_STARTING_ENV = dict(os.environ)


@dataclass
class Broker:
    """The Celery broker the worker uses, how the report names it, and how to clean it up."""

    env: dict[str, str]
    description: str
    cleanup: Callable[[], None] | None = None


# --- the `make bench` side: database, broker, driver, report ------------------------------


def _choose_database() -> Database | None:
    given = _STARTING_ENV.get("DATABASE_URL", "")
    if given:
        if not given.startswith("postgres"):
            return None
        return Database(
            url=given,
            description=f"PostgreSQL from DATABASE_URL (bench user `{BENCH_USERNAME}`, model "
            f"`{MODEL_NAME}`; its rows stay there)",
        )
    return _throwaway_postgres()


def _choose_broker() -> Broker:
    """REDIS_URL when given, else a private database number on a local Redis, else files."""
    given = _STARTING_ENV.get("REDIS_URL", "")
    if given:
        return Broker(env={"REDIS_URL": given}, description="Redis from REDIS_URL")
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        version = client.info("server")["redis_version"]
        client.flushdb()  # leftover messages of an interrupted run must not reach this worker
    except Exception:  # not installed, not running, or fewer databases than REDIS_DB
        return Broker(
            # An empty REDIS_URL makes the settings fall back to kombu's filesystem transport.
            env={"REDIS_URL": ""},
            description="kombu filesystem broker in var/bench/batch/broker (REDIS_URL not set "
            "and no Redis on 127.0.0.1:6379); it polls its folder, which adds latency per task",
        )

    def flush() -> None:
        client.flushdb()
        client.close()

    return Broker(
        env={"REDIS_URL": url},
        description=f"Redis {version} on 127.0.0.1:6379, database {REDIS_DB} kept for the "
        "bench (REDIS_URL not set; flushed before and after the run); also the result "
        "backend and the cache",
        cleanup=flush,
    )


def _driver_env(database: Database, broker: Broker, chunk_rows: int) -> dict[str, str]:
    """Production settings, with everything local kept in WORK_DIR."""
    env = dict(_STARTING_ENV)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "floodsite.settings",
            "DJANGO_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            # APIClient's requests name the host "testserver".
            "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "DJANGO_DEBUG": "off",
            "DJANGO_SECURE_SSL_REDIRECT": "off",
            "DJANGO_SECURE_COOKIES": "off",
            "DATABASE_URL": database.url,
            "FLOODSITE_VAR_DIR": str(WORK_DIR),
            "DJANGO_MEDIA_ROOT": str(WORK_DIR / "media"),
            "DJANGO_STATIC_ROOT": str(WORK_DIR / "static"),
            "FLOODSITE_MODEL_NAME": MODEL_NAME,
            "BATCH_CHUNK_ROWS": str(chunk_rows),
            # The throttles still run but never trip: the bench polls the job five times a
            # second and may be run several times within the hour.
            "THROTTLE_BATCH": "100000/hour",
            "THROTTLE_READ": "100000000/min",
            "OMP_NUM_THREADS": "1",
            "LOG_LEVEL": "WARNING",
            **broker.env,
        }
    )
    return env


def _stop_leftover_worker() -> None:
    """The worker if the driver died without stopping it (its pid file says which)."""
    pid_file = WORK_DIR / "worker.pid"
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"celery" in cmdline:  # the pid is still our worker, not a reused number
        # The worker runs in its own session, so its group is the worker and its pool.
        os.killpg(pid, signal.SIGKILL)


def _run_driver(env: dict[str, str], *, rows: int, reference: bool) -> dict[str, Any]:
    result_path = WORK_DIR / "result.json"
    command = [sys.executable, "-m", "bench.batch", "--driver", str(result_path)]
    command += ["--rows", str(rows)] + ([] if reference else ["--no-reference"])
    # Its own session: a driver that overruns is killed with everything it started.
    driver = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        code = driver.wait(timeout=DRIVER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        raise RuntimeError(f"the batch driver ran over {DRIVER_TIMEOUT_S} s") from None
    finally:
        _stop_leftover_worker()
    if code != 0:
        raise RuntimeError(f"the batch driver failed ({code}); see its output above")
    return json.loads(result_path.read_text())


def bench_batch(*, chunk_rows: int | None = None, rows: int = ROWS, reference: bool = True) -> str:
    """End-to-end batch throughput, worker memory and per-stage chunk costs."""
    load_at_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    (WORK_DIR / "static").mkdir(parents=True)
    chunk_rows = chunk_rows or int(_STARTING_ENV.get("BATCH_CHUNK_ROWS") or DEFAULT_CHUNK_ROWS)
    database = _choose_database()
    if database is None:
        return "\n".join(
            [
                "## Batch scoring (1,000,000-row CSV, one Celery worker)",
                "",
                "Not measured: this section needs PostgreSQL (DATABASE_URL pointing at it, or a "
                "server on 127.0.0.1:5432 with trust authentication for `postgres`).",
            ]
        )
    broker = _choose_broker()
    try:
        env = _driver_env(database, broker, chunk_rows)
        result = _run_driver(env, rows=rows, reference=reference)
    finally:
        if broker.cleanup is not None:
            broker.cleanup()
        if database.cleanup is not None:
            database.cleanup()
    return _report(result, database=database, broker=broker, load_at_start=load_at_start)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _report(
    result: dict[str, Any], *, database: Database, broker: Broker, load_at_start: str
) -> str:
    e2e = result["end_to_end"]
    rows = result["rows"]
    rate = rows / e2e["seconds"]
    reference = result.get("reference")
    memory = e2e["memory"]
    timeline = e2e["timeline"]
    tasks = e2e["tasks"]
    checks_ok = e2e["audit_rows"] == rows and e2e["result_lines"] == rows
    cpu = e2e["cpu_s"]
    others = max(cpu["machine"] - cpu["worker"] - cpu["postgres"] - cpu["bench"], 0.0)
    cost_ms = (cpu["worker"] + cpu["postgres"]) * 1000 / rows
    ceiling = 2 * 1000 / cost_ms  # rows per second that two fully busy cores could pay for
    lines = [
        "## Batch scoring (1,000,000-row CSV, one Celery worker)"
        if rows == ROWS
        else f"## Batch scoring ({rows:,}-row CSV, one Celery worker)",
        "",
        f"A {rows:,}-row CSV ({e2e['file_mib']:.0f} MiB, {len(result['features'])} feature "
        f"columns, documented synthetic generator, seed {SEED}) submitted to "
        "`POST /api/v1/batches/` with a token (DRF APIClient in the bench process), scored by "
        f"ONE `celery -A floodsite worker --concurrency {CONCURRENCY}` (prefork, "
        "OMP_NUM_THREADS=1, production settings) with "
        f"**BATCH_CHUNK_ROWS={result['chunk_rows']:,}** ({tasks['chunks']} chunk tasks). "
        f"Model: {result['model']} (trained by the bench on 60,000 synthetic rows; backend "
        f"{result['backend']}).",
        "",
        f"- database: {database.description}",
        f"- broker: {broker.description}",
        "- timed span: from the 202 of the upload to the first poll (every "
        f"{POLL_S:g} s, `GET /api/v1/batches/{{id}}/`) that shows the job finished with "
        f"`results_url`, results.csv on disk. The upload itself took {e2e['upload_s']:.1f} s "
        "(multipart encoding in-process, header check, row count, file stored, split queued) "
        "and is not in the span.",
        f"- checks: audit rows of the job {e2e['audit_rows']:,}; results.csv data lines "
        f"{e2e['result_lines']:,}; job status `{e2e['status']}` — "
        + ("both equal the rows submitted." if checks_ok else "**mismatch**."),
        f"- machine: {result['machine_cpu']}; load average at start: {load_at_start}. CPU "
        f"during the timed span ({e2e['seconds']:.0f} s, 2 cores = "
        f"{2 * e2e['seconds']:.0f} CPU-s): worker {cpu['worker']:.0f} CPU-s, the bench "
        f"database's PostgreSQL backends {cpu['postgres']:.0f}, the bench process (polls) "
        f"{cpu['bench']:.0f}, **other processes on the machine {others:.0f}**"
        + (
            " — the machine was shared, so rows/s is lower than on a quiet one. "
            if others > 0.1 * 2 * e2e["seconds"]
            else ". "
        )
        + f"Worker + PostgreSQL cost {cost_ms:.3f} CPU-ms per row: with both cores to "
        f"itself the job could go no faster than **{ceiling:,.0f} rows/s**.",
        "",
        "| path | rows | seconds | rows/s |",
        "|---|---:|---:|---:|",
        f"| floodsite batch API + worker (202 → results.csv ready) | {rows:,} | "
        f"{e2e['seconds']:.1f} | **{rate:,.0f}** |",
    ]
    ratio = None
    if reference is not None:
        ref_rate = reference["rows"] / reference["seconds"]
        ratio = rate / ref_rate
        lines.append(
            f"| naive reference (read_csv → predict_proba → bulk_create of "
            f"{REFERENCE_BATCH_ROWS:,}) | {reference['rows']:,} | {reference['seconds']:.1f} | "
            f"{ref_rate:,.0f} |"
        )
        stages = reference["stages"]
        lines += [
            "",
            f"Ours / reference: **{ratio:.2f}x**. The reference runs in one process (one core) "
            f"in the bench process, scikit-learn backend: read_csv {stages['read_csv']:.1f} s, "
            f"predict_proba {stages['predict_proba']:.1f} s, bulk_create "
            f"{stages['bulk_create']:.1f} s; it writes {reference['audit_rows']:,} audit rows "
            f"(source `batch`, no job, request_id `{REFERENCE_REQUEST_ID}`) and no result file, "
            "which favours it.",
        ]
    lines += [
        "",
        "Where the end-to-end time went (job timestamps in the database; task run times "
        "from the worker's log):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        f"| 202 → split done (queue wait + `batch_split`: {timeline['split_task_s']:.1f} s in "
        f"the task, one pool process, the other idle) | {timeline['to_split_done_s']:.1f} |",
        f"| split done → last chunk committed ({tasks['chunks']} `batch_chunk_process` tasks, "
        f"{tasks['chunk_mean_s']:.2f} s mean / {tasks['chunk_max_s']:.2f} s max each, "
        f"{tasks['chunk_sum_s']:.1f} s summed over {CONCURRENCY} processes) | "
        f"{timeline['chunks_s']:.1f} |",
        f"| last chunk → job finished (`batch_finalize`: join parts, errors.csv, status) | "
        f"{timeline['finalize_s']:.1f} |",
        f"| job finished → seen by the poll | {timeline['seen_s']:.1f} |",
        "",
        f"The API's own `rows_per_second` (from split done to finished, so without the "
        f"split) read {e2e['api_rows_per_second']:,.0f}.",
        "",
        f"Worker memory (VmRSS of each prefork pool process, sampled every {SAMPLE_S:g} s; MiB):",
        "",
        "| seconds after 202 | "
        + " | ".join(f"pool {n + 1}" for n in range(memory["pools"]))
        + " |",
        "|---:|" + "---:|" * memory["pools"],
        *(
            f"| {row['t']:.0f} | " + " | ".join(f"{v:.0f}" for v in row["rss_mib"]) + " |"
            for row in memory["table"]
        ),
        "",
        f"Peak (VmHWM) of a pool process: **{memory['peak_hwm_mib']:.0f} MiB**; the worker's "
        f"main process {memory['main_hwm_mib']:.0f} MiB. Growth from a quarter of the run to "
        f"the end: {memory['growth_mib']:+.0f} MiB (flat means within "
        f"{FLAT_TOLERANCE_MIB} MiB).",
    ]
    profile = result["profile"]
    total = sum(profile["stages"].values())
    lines += [
        "",
        f"One {profile['chunk_rows']:,}-row chunk, step by step (`batch_chunk_process` called "
        f"in the bench process with a stopwatch around each step, median of {PROFILE_CHUNKS} "
        "chunks, no other work of the bench running meanwhile; in the run above two chunks "
        "shared the 2 cores with PostgreSQL, so each took longer):",
        "",
        "| step | ms | share |",
        "|---|---:|---:|",
        *(
            f"| {name} | {ms:,.0f} | {100 * ms / total:.0f} % |"
            for name, ms in profile["stages"].items()
        ),
        f"| **total** | **{total:,.0f}** | = {profile['chunk_rows'] * 1000 / total:,.0f} rows/s "
        "per process |",
        "",
        f"`batch_split` alone on a {profile['split_rows']:,}-row file: "
        f"{profile['split_rows_per_s']:,.0f} rows/s.",
        "",
        "| target (this 2-core machine) | measured | |",
        "|---|---|---|",
        f"| ≥ {TARGET_ROWS_PER_S:,} rows/s end to end | {rate:,.0f} | "
        f"{_met(rate >= TARGET_ROWS_PER_S)} |",
    ]
    if ratio is not None:
        lines.append(
            f"| ≥ {TARGET_RATIO:g}x the naive reference | {ratio:.2f}x | "
            f"{_met(ratio >= TARGET_RATIO)} |"
        )
    flat = memory["growth_mib"] <= FLAT_TOLERANCE_MIB
    lines += [
        f"| worker memory flat | {memory['growth_mib']:+.0f} MiB after warm-up, peak "
        f"{memory['peak_hwm_mib']:.0f} MiB | {_met(flat)} |",
        f"| audit rows = results.csv lines = rows | {e2e['audit_rows']:,} / "
        f"{e2e['result_lines']:,} | {_met(checks_ok)} |",
        "",
        f"Python {platform.python_version()}, Celery {result['celery']}, pandas "
        f"{result['pandas']}, scikit-learn {result['sklearn']}; worker log in "
        "`var/bench/batch/worker.log`.",
    ]
    return "\n".join(lines)


# --- the driver: Django side ---------------------------------------------------------------


@dataclass
class Fixture:
    user: Any
    token: str
    loaded: Any  # mlcore LoadedModel of the bench model


def _prepare() -> Fixture:
    """Migrate, train and promote the bench model, and give the bench user a token."""
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from accounts.roles import Role
    from accounts.services import api_token_create, user_set_role
    from mlcore.selectors import predictor_get_active

    call_command("migrate", interactive=False, verbosity=0)
    call_command(
        "train_model", promote=True, rows=60_000, seed=0, verbosity=0, stdout=io.StringIO()
    )
    user, created = User.objects.get_or_create(username=BENCH_USERNAME)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user_set_role(user=user, role=Role.ANALYST)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    _, secret = api_token_create(user=user, name=f"make bench {stamp}", expires_in_days=1)
    return Fixture(user=user, token=secret, loaded=predictor_get_active(name=MODEL_NAME))


def _write_features_csv(path: Path, rows: int, *, seed: int, names: list[str]) -> int:
    """The generator's rows, features only, in the model's column order; returns bytes."""
    from mlcore.engine import synthetic

    with open(path, "w", encoding="utf-8", newline="") as handle:
        # One generator frame at a time, so a million rows never sit in memory together.
        for number, frame in enumerate(synthetic.iter_frames(rows, seed=seed)):
            frame[names].to_csv(handle, index=False, header=number == 0, lineterminator="\n")
    return path.stat().st_size


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 22), b""))


def _start_worker(log: Path) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "floodsite",
        "worker",
        "--concurrency",
        str(CONCURRENCY),
        # One worker alone: no peers to greet or synchronise with at start.
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",  # the "Task ... succeeded in Xs" lines give each task's run time
    ]
    env = {**os.environ, "LOG_LEVEL": "INFO", "LOG_FORMAT": "console"}
    with open(log, "ab") as handle:
        # Its own session, so stopping it reaches the pool processes through the group id.
        worker = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (WORK_DIR / "worker.pid").write_text(str(worker.pid))
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited at start:\n{log.read_text()[-3000:]}")
        if " ready." in log.read_text(errors="replace"):
            return worker
        time.sleep(0.2)
    _stop_worker(worker)
    raise RuntimeError(f"the worker was not ready in {WORKER_START_TIMEOUT_S} s")


def _stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)  # warm shutdown: the pool finishes and exits
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def _status_kib(pid: int) -> tuple[int, int] | None:
    """VmRSS and VmHWM of a process in KiB, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (KeyError, ValueError):
        return None


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def _backend_pids(database_name: str) -> list[int]:
    """PostgreSQL backends serving the bench database (their title names the database)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("postgres:") and f" {database_name} " in cmdline:
            pids.append(int(entry.name))
    return pids


class Sampler(threading.Thread):
    """Every SAMPLE_S seconds: VmRSS/VmHWM of the worker's processes, and the CPU time of the
    worker's and the bench database's PostgreSQL backends.

    CPU is read per process and remembered, so a backend that exits during the run (a
    connection past its CONN_MAX_AGE) still counts, up to its last sample.
    """

    def __init__(self, main_pid: int, database_name: str) -> None:
        super().__init__(daemon=True)
        self.main_pid = main_pid
        self.database_name = database_name
        self.samples: list[tuple[float, int, int, int]] = []  # (monotonic, pid, rss, hwm)
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (worker|postgres, last CPU s)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.tick()
            self._stop_event.wait(SAMPLE_S)

    def tick(self) -> None:
        now = time.monotonic()
        worker = [self.main_pid, *_children(self.main_pid)]
        with self._lock:
            for pid in worker:
                status = _status_kib(pid)
                if status is not None:
                    self.samples.append((now, pid, *status))
            for kind, pids in (("worker", worker), ("postgres", _backend_pids(self.database_name))):
                for pid in pids:
                    used = _process_cpu_s([pid])
                    if used:
                        self.cpu[pid] = (kind, used)

    def cpu_snapshot(self) -> dict[int, tuple[str, float]]:
        self.tick()
        with self._lock:
            return dict(self.cpu)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def pool_pids(self) -> list[int]:
        return sorted({pid for _, pid, _, _ in self.samples if pid != self.main_pid})


def _cpu_between(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per kind between two snapshots; a process born in between counts whole."""
    used = {"worker": 0.0, "postgres": 0.0}
    for pid, (kind, seconds) in after.items():
        used[kind] += seconds - before.get(pid, (kind, 0.0))[1]
    return used


def _memory_summary(sampler: Sampler, started: float, ended: float) -> dict[str, Any]:
    pools = sampler.pool_pids()
    by_pid: dict[int, list[tuple[float, int]]] = {pid: [] for pid in pools}
    main_hwm = 0
    for at, pid, rss, hwm in sampler.samples:
        if pid == sampler.main_pid:
            main_hwm = max(main_hwm, hwm)
        elif started <= at <= ended:
            by_pid[pid].append((at, rss))

    def rss_at(pid: int, moment: float) -> float:
        series = by_pid[pid] or [(moment, 0)]
        return min(series, key=lambda item: abs(item[0] - moment))[1] / 1024

    span = ended - started
    table = [
        {"t": share * span, "rss_mib": [rss_at(pid, started + share * span) for pid in pools]}
        for share in (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    ]
    growth = max(
        (rss_at(pid, ended) - rss_at(pid, started + span / 4) for pid in pools), default=0.0
    )
    peak = max((hwm for _, pid, _, hwm in sampler.samples if pid in pools), default=0)
    return {
        "pools": len(pools),
        "table": table,
        "growth_mib": growth,
        "peak_hwm_mib": peak / 1024,
        "main_hwm_mib": main_hwm / 1024,
    }


_TASK_DONE = re.compile(r"Task predictions\.tasks\.(\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")


def _own_cpu_s() -> float:
    """This process's CPU time: the API calls of the polls and the sampler thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _task_times(log: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for name, seconds in _TASK_DONE.findall(log.read_text(errors="replace")):
        times.setdefault(name, []).append(float(seconds))
    return times


def _end_to_end(fixture: Fixture, csv_path: Path, rows: int) -> dict[str, Any]:
    """Submit the file through the API to one worker and wait for its results.csv."""
    from django.db import connection
    from django.utils import timezone
    from rest_framework.test import APIClient

    from predictions.models import BatchJob, Prediction

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {fixture.token}")
    log = WORK_DIR / "worker.log"
    worker = _start_worker(log)
    sampler = Sampler(worker.pid, connection.settings_dict["NAME"])
    sampler.start()
    try:
        print("bench: batch upload ...", flush=True)
        upload_started = time.perf_counter()
        with open(csv_path, "rb") as handle:
            answer = client.post("/api/v1/batches/", {"file": handle}, format="multipart")
        accepted = time.perf_counter()
        accepted_at = timezone.now()
        if answer.status_code != 202:
            raise RuntimeError(f"POST /api/v1/batches/ answered {answer.status_code}: {answer}")
        cpu_before = (sampler.cpu_snapshot(), _machine_busy_s(), _own_cpu_s())
        detail_url = f"/api/v1/batches/{answer.json()['id']}/"
        print("bench: batch scoring ...", flush=True)
        deadline = accepted + JOB_TIMEOUT_S
        while True:
            detail = client.get(detail_url).json()
            if detail["finished_at"] and detail["results_url"]:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the job did not finish in {JOB_TIMEOUT_S} s: {detail}")
            time.sleep(POLL_S)
        ready = time.perf_counter()
        ready_at = timezone.now()
        cpu_after = (sampler.cpu_snapshot(), _machine_busy_s(), _own_cpu_s())
    finally:
        sampler.stop()
        _stop_worker(worker)
    seconds = ready - accepted
    job = BatchJob.objects.get(pk=detail["id"])
    result_path = Path(job.result_file.path)
    if not result_path.exists():
        raise RuntimeError(f"the job finished but {result_path} is missing")
    chunk_done = sorted(t for t in job.chunks.values_list("finished_at", flat=True) if t)
    started_at, finished_at = job.started_at, job.finished_at
    if started_at is None or finished_at is None or not chunk_done:
        raise RuntimeError(f"the job finished without its start, end or chunk times: {job.pk}")
    tasks = _task_times(log)
    chunk_times = tasks.get("batch_chunk_task", [0.0])
    # Sampler clock (monotonic) lines up with the span through the perf_counter offsets.
    offset = time.monotonic() - time.perf_counter()
    return {
        "seconds": seconds,
        "upload_s": accepted - upload_started,
        "file_mib": csv_path.stat().st_size / 2**20,
        "status": job.status,
        "audit_rows": Prediction.objects.filter(batch=job).count(),
        "result_lines": _count_lines(result_path) - 1,  # the header
        "api_rows_per_second": detail["rows_per_second"] or 0.0,
        "cpu_s": {
            **_cpu_between(cpu_before[0], cpu_after[0]),
            "bench": cpu_after[2] - cpu_before[2],
            "machine": cpu_after[1] - cpu_before[1],
        },
        "memory": _memory_summary(sampler, accepted + offset, ready + offset),
        "timeline": {
            "to_split_done_s": (started_at - accepted_at).total_seconds(),
            "split_task_s": sum(tasks.get("batch_split_task", [0.0])),
            "chunks_s": (chunk_done[-1] - started_at).total_seconds(),
            "finalize_s": (finished_at - chunk_done[-1]).total_seconds(),
            "seen_s": (ready_at - finished_at).total_seconds(),
        },
        "tasks": {
            "chunks": len(chunk_done),
            "chunk_mean_s": statistics.fmean(chunk_times),
            "chunk_max_s": max(chunk_times),
            "chunk_sum_s": sum(chunk_times),
            "finalize_task_s": sum(tasks.get("batch_finalize_task", [0.0])),
        },
        "rows": rows,
    }


def _reference(fixture: Fixture, csv_path: Path) -> dict[str, Any]:
    """The tutorial way: whole file in pandas, scikit-learn, ORM bulk_create per 1,000 rows."""
    import joblib
    import pandas as pd

    from predictions.models import Prediction

    version = fixture.loaded.model_version
    manifest = version.manifest
    pipeline = joblib.load(version.artifact.path)
    names = [feature["name"] for feature in manifest["features"]]
    negative, positive = manifest["class_labels"]
    bands = sorted(manifest["risk_bands"], key=lambda band: band["lower"])

    started = time.perf_counter()
    frame = pd.read_csv(csv_path)
    read = time.perf_counter()
    # Plain numbers, as the pipeline was fitted (it knows no column names).
    probabilities = pipeline.predict_proba(frame[names].to_numpy())[:, 1]
    scored = time.perf_counter()
    latency_ms = (scored - read) * 1000 / max(len(frame), 1)
    for first in range(0, len(frame), REFERENCE_BATCH_ROWS):
        records = frame.iloc[first : first + REFERENCE_BATCH_ROWS].to_dict("records")
        batch = []
        for offset, inputs in enumerate(records):
            probability = float(probabilities[first + offset])
            batch.append(
                Prediction(
                    user=fixture.user,
                    source="batch",
                    model_version=version,
                    inputs=inputs,
                    probability=probability,
                    label=positive if probability >= 0.5 else negative,
                    risk_band=[b["name"] for b in bands if probability >= b["lower"]][-1],
                    explanation=[],
                    out_of_range=[],
                    latency_ms=latency_ms,
                    request_id=REFERENCE_REQUEST_ID,
                    batch=None,
                )
            )
        Prediction.objects.bulk_create(batch)
    done = time.perf_counter()
    return {
        "rows": len(frame),
        "seconds": done - started,
        "stages": {
            "read_csv": read - started,
            "predict_proba": scored - read,
            "bulk_create": done - scored,
        },
        "audit_rows": Prediction.objects.filter(request_id=REFERENCE_REQUEST_ID).count(),
    }


@contextmanager
def _stage_clock() -> Iterator[list[tuple[str, float, float]]]:
    """Record (step, start, end) of each step batch_chunk_process calls, without changing it.

    The steps are the functions it calls by name, wrapped for the duration of the block;
    the gaps between them (result part, counters) are read off the timestamps.
    """
    import psycopg
    from django.db import connections

    from mlcore.engine import schema
    from predictions import batches
    from predictions.models import BatchRowError

    marks: list[tuple[str, float, float]] = []

    def clocked(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.isgeneratorfunction(call):  # _read_chunk: one mark per block it yields

            @functools.wraps(call)
            def steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
                inner = call(*args, **kwargs)
                while True:
                    start = time.perf_counter()
                    item = next(inner, None)
                    if item is None:
                        return
                    marks.append((name, start, time.perf_counter()))
                    yield item

            return steps

        @functools.wraps(call)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                marks.append((name, start, time.perf_counter()))

        return wrapper

    original_copy = psycopg.Cursor.copy

    @contextmanager
    def clocked_copy(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        start = time.perf_counter()
        with original_copy(self, *args, **kwargs) as copy:
            yield copy
        marks.append(("copy", start, time.perf_counter()))

    manager = BatchRowError.objects
    wrapper = connections["default"]  # the object atomic() calls commit() on
    targets: list[tuple[Any, str]] = [
        (batches, "_read_chunk"),
        (schema, "validate_frame"),
        (batches, "score_batch"),
        (batches, "_write_audit_rows"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, call in saved:
        setattr(owner, name, clocked(name, call))
    # Wrapped on the instance, so deleting the wrapper gives back the class's method.
    on_instances = [(manager, "bulk_create", "errors_bulk_create"), (wrapper, "commit", "commit")]
    for owner, name, mark in on_instances:
        setattr(owner, name, clocked(mark, getattr(owner, name)))
    # Timed where COPY is called; mypy refuses any assignment to a method.
    psycopg.Cursor.copy = clocked_copy  # type: ignore[method-assign]
    try:
        yield marks
    finally:
        psycopg.Cursor.copy = original_copy  # type: ignore[method-assign]
        for owner, name, _ in on_instances:
            delattr(owner, name)
        for owner, name, call in saved:
            setattr(owner, name, call)


def _profile_chunks(fixture: Fixture, chunk_rows: int) -> dict[str, Any]:
    """Split a small job in-process and score its chunks one by one under the stopwatch."""
    from django.conf import settings
    from django.core.files import File

    from predictions import batches
    from predictions.models import BatchJob, Source

    # One block per chunk, so each stage below is one call (workers read in BATCH_BLOCK_ROWS).
    settings.BATCH_BLOCK_ROWS = chunk_rows
    names = fixture.loaded.manifest.feature_names
    rows = PROFILE_CHUNKS * chunk_rows
    path = WORK_DIR / "profile.csv"
    _write_features_csv(path, rows, seed=SEED + 1, names=names)
    job = BatchJob(
        owner=fixture.user,
        source=Source.API,
        original_name="profile.csv",
        model_version=fixture.loaded.model_version,
    )
    with open(path, "rb") as handle:
        job.input_file.save("input.csv", File(handle), save=False)
    # Saved directly, not through batch_create: nothing is queued, the bench calls each step.
    job.save()
    started = time.perf_counter()
    indexes = batches.batch_split(job_id=str(job.pk))
    split_s = time.perf_counter() - started

    per_chunk: list[dict[str, float]] = []
    for index in indexes:
        with _stage_clock() as marks:
            begun = time.perf_counter()
            batches.batch_chunk_process(job_id=str(job.pk), index=index)
            ended = time.perf_counter()
        at = {name: (start, end) for name, start, end in marks}
        write_s = at["_write_audit_rows"][1] - at["_write_audit_rows"][0]
        copy_s = at["copy"][1] - at["copy"][0]
        per_chunk.append(
            {
                "job and chunk lookups, model from the process cache": at["_read_chunk"][0] - begun,
                "read_csv (`_read_chunk`)": at["_read_chunk"][1] - at["_read_chunk"][0],
                "`validate_frame`": at["validate_frame"][1] - at["validate_frame"][0],
                "`score_batch`": at["score_batch"][1] - at["score_batch"][0],
                "result part: DataFrame + `to_csv`, then the chunk's row lock": (
                    at["_write_audit_rows"][0] - at["score_batch"][1]
                ),
                "audit row columns built in Python (`_write_audit_rows` minus COPY)": write_s
                - copy_s,
                "COPY into predictions_prediction (values prepared row by row)": copy_s,
                "row errors `bulk_create` (no bad rows in this file)": (
                    at["errors_bulk_create"][1] - at["errors_bulk_create"][0]
                ),
                "chunk + job counter updates, chunks_done read": (
                    at["commit"][0] - at["errors_bulk_create"][1]
                ),
                "COMMIT": at["commit"][1] - at["commit"][0],
                "after commit": ended - at["commit"][1],
            }
        )
    stages = {
        name: statistics.median(chunk[name] for chunk in per_chunk) * 1000 for name in per_chunk[0]
    }
    return {
        "chunk_rows": chunk_rows,
        "stages": stages,
        "split_rows": rows,
        "split_rows_per_s": rows / split_s,
    }


def _machine_cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    return f"{os.cpu_count()} cores"


def _driver(result_path: Path, *, rows: int, reference: bool) -> None:
    """Everything that needs Django: run in its own process by bench_batch."""
    import celery
    import pandas as pd
    import sklearn
    from django.conf import settings

    fixture = _prepare()
    names = fixture.loaded.manifest.feature_names
    csv_path = WORK_DIR / "input.csv"
    print(f"bench: batch writing a {rows:,}-row CSV ...", flush=True)
    _write_features_csv(csv_path, rows, seed=SEED, names=names)
    result: dict[str, Any] = {
        "rows": rows,
        "chunk_rows": settings.BATCH_CHUNK_ROWS,
        "features": names,
        "model": str(fixture.loaded.label),
        "backend": fixture.loaded.backend,
        "machine_cpu": _machine_cpu(),
        "celery": celery.__version__,
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
    }
    result["end_to_end"] = _end_to_end(fixture, csv_path, rows)
    if reference:
        print("bench: batch naive reference ...", flush=True)
        result["reference"] = _reference(fixture, csv_path)
    print("bench: batch chunk profile ...", flush=True)
    result["profile"] = _profile_chunks(fixture, settings.BATCH_CHUNK_ROWS)
    result_path.write_text(json.dumps(result, indent=2, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", metavar="RESULT", help="internal: run the Django side")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--chunk-rows", type=int, help="BATCH_CHUNK_ROWS (default: 20,000)")
    parser.add_argument("--no-reference", action="store_true", help="skip the naive reference")
    args = parser.parse_args()
    if args.driver:
        _driver(Path(args.driver), rows=args.rows, reference=not args.no_reference)
        return
    # Standalone: print the block without touching docs/benchmarks.md (chunk-size trials).
    print(bench_batch(chunk_rows=args.chunk_rows, rows=args.rows, reference=not args.no_reference))


if __name__ == "__main__":
    main()
