"""The "api" section of `make bench`: the prediction API under wrk, next to a naive reference.

One gunicorn (gunicorn.conf.py: 2 gthread workers x 4 threads, a listening socket each;
production settings, OMP_NUM_THREADS=1) on loopback serves both
`POST /api/v1/predictions/` and the tutorial-style endpoint of bench/reference.py, with the same
token, database and audit table. wrk drives each at 1 and 16 connections, the two taking turns
in short rounds; every 2xx answer is matched by its X-Request-ID to the audit row it must have
left.

All local state (model artifacts, broker folder, logs, SQLite fallback) lives in
var/bench/api/, which is wiped at the start of each run, so the developer's var/ is untouched.
The Django work of the bench itself (migrate, train, token, row counts) runs in this process
with the same environment as the server, so this section configures Django for the process.
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = ROOT / "var" / "bench" / "api"
LUA_SCRIPT = Path(__file__).with_name("predict.lua")

OUR_PATH = "/api/v1/predictions/"
REFERENCE_PATH = "/bench/reference/predictions/"  # bench/urls.py routes it
MODEL_NAME = "flood-risk-bench"  # its own registry name: a shared DATABASE_URL keeps its model
BENCH_USERNAME = "bench-api"
BODY_ROWS = 300
WARMUP_S = 3
# Ours and the reference take turns, ROUNDS times ROUND_S seconds each, in ABBA order: the
# machines this runs on change speed from one minute to the next (shared hosts), and runs
# minutes apart would compare two different machines.
ROUNDS = 10
ROUND_S = 3
RUN_S = ROUNDS * ROUND_S  # a shadow row: one run of the same total length
CONNECTIONS = (1, 16)
WRK_THREADS = 1  # one wrk thread keeps the load generator's share of the 2 cores small
SERVER_START_TIMEOUT_S = 60

TARGET_RATIO = 3.0
TARGET_P50_MS = 3.0


@dataclass
class Database:
    """Where the server writes: its URL, how the report names it, and how to clean it up."""

    url: str
    description: str
    cleanup: Callable[[], None] | None = None


@dataclass
class Endpoint:
    key: str
    title: str
    path: str
    row_prefix: str  # what the audit row's request_id has in front of the X-Request-ID


@dataclass
class CpuUse:
    """CPU seconds during one run: the server's workers, wrk, and everything else on the box."""

    seconds: float
    workers_s: float
    wrk_s: float
    database_s: float
    machine_busy_s: float

    @property
    def others_cores(self) -> float:
        ours = self.workers_s + self.wrk_s + self.database_s
        return max(self.machine_busy_s - ours, 0.0) / self.seconds


@dataclass
class Run:
    """One measured wrk run and its audit reconciliation."""

    endpoint: Endpoint
    connections: int
    result: dict[str, Any]
    rows_written: int
    in_flight: int
    answered_without_row: int
    cpu: CpuUse
    round_rps: list[float] = field(default_factory=list)  # of each round, when combined

    @property
    def requests(self) -> int:
        return int(self.result["requests"])

    @property
    def non2xx(self) -> int:
        return int(self.result["non2xx"])

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx

    @property
    def socket_errors(self) -> int:
        r = self.result
        return int(r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"])

    @property
    def rps(self) -> float:
        return self.requests / (self.result["duration_us"] / 1e6)

    def ms(self, key: str) -> float:
        return float(self.result[key]) / 1000

    @property
    def worker_cpu_ms(self) -> float:
        """Server CPU per answered request: steadier than req/s when the machine is shared."""
        return self.cpu.workers_s * 1000 / max(self.rows_written, 1)

    @property
    def database_cpu_ms(self) -> float:
        return self.cpu.database_s * 1000 / max(self.rows_written, 1)

    @property
    def audit_matches(self) -> bool:
        return self.rows_written - self.in_flight == self.ok and self.answered_without_row == 0


ENDPOINTS = (
    Endpoint("ours", "floodsite `POST /api/v1/predictions/`", OUR_PATH, ""),
    Endpoint("reference", "naive reference (bench/reference.py)", REFERENCE_PATH, "reference-"),
)
# The same endpoint again once a second version is in shadow (scoring every request too).
SHADOW = Endpoint("shadow", "floodsite, with a shadow version scoring every request", OUR_PATH, "")


# --- tools and database ---------------------------------------------------------------------


def _ensure_wrk() -> str:
    """wrk from Debian's package, installed only when missing (a fresh machine has none)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk is missing; installing Debian's package", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, timeout=300, check=False).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, timeout=300, check=True)
        subprocess.run(install, env=env, timeout=300, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is still missing after apt-get install wrk")
    return found


def _throwaway_postgres() -> Database | None:
    """A fresh database on the local PostgreSQL (trust auth as postgres), dropped afterwards."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        return None

    def admin() -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=5432,
            user="postgres",
            dbname="postgres",
            connect_timeout=3,
            autocommit=True,
        )

    name = f"floodsite_bench_{os.getpid()}"
    try:
        with admin() as conn:
            version_row = conn.execute("SHOW server_version").fetchone()
            server = version_row[0] if version_row else "unknown"
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        return None

    def drop() -> None:
        with admin() as conn:
            statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(statement.format(sql.Identifier(name)))

    return Database(
        url=f"postgres://postgres@127.0.0.1:5432/{name}",
        description=f"PostgreSQL {server.split()[0]}, throwaway database `{name}` on "
        "127.0.0.1 (DATABASE_URL not set; dropped after the run)",
        cleanup=drop,
    )


def _choose_database() -> Database:
    given = os.environ.get("DATABASE_URL", "")
    if given:
        kind = "SQLite" if given.startswith("sqlite") else "PostgreSQL"
        return Database(
            url=given,
            description=f"{kind} from DATABASE_URL (bench user `{BENCH_USERNAME}`, model "
            f"`{MODEL_NAME}`; its rows stay there)",
        )
    database = _throwaway_postgres()
    if database is not None:
        return database
    return Database(
        url=f"sqlite:///{WORK_DIR / 'bench.sqlite3'}",
        description="SQLite in var/bench/api (DATABASE_URL not set and no PostgreSQL on "
        "127.0.0.1:5432)",
    )


def _server_env(database: Database) -> dict[str, str]:
    """Production settings on plain loopback HTTP, with everything local kept in WORK_DIR."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DJANGO_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_DEBUG": "off",
            "DATABASE_URL": database.url,
            # No TLS proxy in front: HTTPS redirects and secure-only cookies would break HTTP.
            "DJANGO_SECURE_SSL_REDIRECT": "off",
            "DJANGO_SECURE_COOKIES": "off",
            # The throttle still runs (its cache reads are part of the cost) but never trips.
            "THROTTLE_PREDICT": "100000000/min",
            "FLOODSITE_VAR_DIR": str(WORK_DIR),
            "DJANGO_MEDIA_ROOT": str(WORK_DIR / "media"),
            "DJANGO_STATIC_ROOT": str(WORK_DIR / "static"),
            "FLOODSITE_MODEL_NAME": MODEL_NAME,
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


# --- Django side: model, token, bodies, audit counts ----------------------------------------


@dataclass
class Fixture:
    user: Any
    token: str
    model_label: str
    backend: str
    bodies_file: Path
    sample_body: dict[str, Any]


def _prepare(env: dict[str, str]) -> Fixture:
    """Migrate, train and promote the model, create the bench user's token, write the bodies."""
    os.environ.update(env)
    os.environ["LOG_LEVEL"] = "WARNING"  # the server keeps the real level; this is the driver
    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from accounts.roles import Role
    from accounts.services import api_token_create, user_set_role
    from mlcore.engine import synthetic
    from mlcore.selectors import predictor_get_active

    call_command("migrate", interactive=False, verbosity=0)
    call_command(
        "train_model", promote=True, rows=60_000, seed=0, verbosity=0, stdout=io.StringIO()
    )
    loaded = predictor_get_active(name=MODEL_NAME)
    user, created = User.objects.get_or_create(username=BENCH_USERNAME)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user_set_role(user=user, role=Role.ANALYST)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    _, secret = api_token_create(user=user, name=f"make bench {stamp}", expires_in_days=1)

    # Realistic, varied rows from the documented generator; wrk cycles through them.
    frame = synthetic.generate(BODY_ROWS, seed=2024)
    bodies = [
        {
            "inputs": {
                spec.name: int(row[spec.name])
                if spec.dtype == "int"
                else round(float(row[spec.name]), 3)
                for spec in loaded.manifest.features
            }
        }
        for _, row in frame.iterrows()
    ]
    bodies_file = WORK_DIR / "bodies.lua"
    # Lua long strings need no escaping; JSON never contains the closing "]==]".
    encoded = ("[==[" + json.dumps(body, separators=(",", ":")) + "]==]" for body in bodies)
    bodies_file.write_text("return {\n" + ",\n".join(encoded) + "\n}\n")
    return Fixture(
        user=user,
        token=secret,
        model_label=loaded.label,
        backend=loaded.backend,
        bodies_file=bodies_file,
        sample_body=bodies[0],
    )


def _shadow_start() -> str:
    """Train a second version and put it in shadow; the server sees it at its next recheck."""
    from django.conf import settings
    from django.core.management import call_command

    from mlcore.models import ModelVersion, Stage
    from mlcore.services import model_version_shadow_start

    call_command("train_model", rows=60_000, seed=1, verbosity=0, stdout=io.StringIO())
    candidate = (
        ModelVersion.objects.filter(name=MODEL_NAME, stage=Stage.CANDIDATE)
        .order_by("-version")
        .first()
    )
    if candidate is None:
        raise RuntimeError("train_model registered no candidate to shadow")
    model_version_shadow_start(model_version=candidate, user=None, reason="make bench")
    # Every worker process notices the new stage within the recheck interval.
    time.sleep(settings.FLOODSITE_MODEL_RECHECK_SECONDS + 1)
    return str(candidate)


def _shadow_row_count(user: Any) -> int:
    from predictions.models import Prediction

    _settled_row_count(user)
    return Prediction.objects.filter(user=user, shadow_probability__isnull=False).count()


def _commit_floor_ms(samples: int = 200) -> float | None:
    """Median time of one durable single-row INSERT + COMMIT: no request can answer faster."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    times = []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE bench_commit_probe (id int)")
        # A temporary table writes no WAL; a real one is what the audit insert pays for.
        cursor.execute("DROP TABLE bench_commit_probe")
        cursor.execute("CREATE TABLE bench_commit_probe (id int)")
        try:
            for n in range(samples):
                started = time.perf_counter()
                cursor.execute("INSERT INTO bench_commit_probe VALUES (%s)", [n])  # autocommit
                times.append((time.perf_counter() - started) * 1000)
        finally:
            cursor.execute("DROP TABLE bench_commit_probe")
    return sorted(times)[len(times) // 2]


def _row_count(user: Any) -> int:
    from predictions.models import Prediction

    return Prediction.objects.filter(user=user).count()


def _settled_row_count(user: Any, *, quiet_s: float = 1.0, limit_s: float = 15.0) -> int:
    """The bench user's row count once the server has finished what wrk left in flight."""
    deadline = time.monotonic() + limit_s
    count = _row_count(user)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        again = _row_count(user)
        if again == count:
            return count
        count = again
    return count


def _row_request_ids(user: Any, prefix: str) -> set[str]:
    from predictions.models import Prediction

    rows = Prediction.objects.filter(user=user, request_id__startswith=prefix)
    return set(rows.values_list("request_id", flat=True))


# --- CPU accounting (Linux /proc) -------------------------------------------------------------

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:  # else gone since it was listed
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total * _TICK_S


def _machine_busy_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user, nice, system, irq, softirq: time this machine's processes ran (not idle, iowait,
    # or steal, which is the hypervisor's).
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) * _TICK_S


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone


def _server_pids(master: int, database_name: str) -> tuple[list[int], dict[int, float], int]:
    """gunicorn's workers; the CPU seconds so far of each PostgreSQL backend serving the bench
    database; and the postmaster (their parent), or 0 when there is none."""
    workers, backends, postmaster = [], {}, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == master:
            workers.append(int(entry.name))
        elif database_name and f" {database_name} " in cmdline:
            backends[int(entry.name)] = (int(fields[11]) + int(fields[12])) * _TICK_S
            postmaster = int(fields[1])
    return workers, backends, postmaster


def _reaped_cpu_s(pid: int) -> float:
    """CPU seconds of the children ``pid`` has waited for (cutime + cstime)."""
    fields = _stat_fields(pid) if pid else None
    return (int(fields[13]) + int(fields[14])) * _TICK_S if fields else 0.0


@contextmanager
def _cpu_meter(master: int, database_name: str) -> Iterator[list[CpuUse]]:
    """Measure the block's CPU use; the result is appended to the yielded list at the end.

    Django closes a database connection after DATABASE_CONN_MAX_AGE and opens another, so
    backends come and go during a run: a new one counts whole, and one that exited counts
    through its parent, the postmaster, which adds the CPU of each child it reaps.
    """
    workers, backends, postmaster = _server_pids(master, database_name)
    workers.append(master)  # it does next to nothing, but it is gunicorn
    started = time.monotonic()
    workers_before, reaped_before = _process_cpu_s(workers), _reaped_cpu_s(postmaster)
    machine_before = _machine_busy_s()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited for
    box: list[CpuUse] = []
    yield box
    workers_after, machine_after = _process_cpu_s(workers), _machine_busy_s()
    _, backends_after, postmaster_after = _server_pids(master, database_name)
    reaped_after = _reaped_cpu_s(postmaster or postmaster_after)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_s = reaped.ru_utime + reaped.ru_stime - children.ru_utime - children.ru_stime
    live_s = sum(cpu - backends.get(pid, 0.0) for pid, cpu in backends_after.items())
    exited_s = (reaped_after - reaped_before) - sum(
        cpu for pid, cpu in backends.items() if pid not in backends_after
    )
    box.append(
        CpuUse(
            seconds=time.monotonic() - started,
            workers_s=workers_after - workers_before,
            wrk_s=wrk_s,
            database_s=live_s + max(exited_s, 0.0),
            machine_busy_s=machine_after - machine_before,
        )
    )


# --- server and load ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def _gunicorn(env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen]:
    """gunicorn on loopback for the duration of the block; stopped even when the block fails."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(ROOT / "gunicorn.conf.py"),
        "floodsite.wsgi:application",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
        # The default control socket lives in the home folder and is shared with any other
        # gunicorn of this user; the bench needs none.
        "--no-control-socket",
    ]
    with open(log_path, "wb") as log:
        # Its own session, so a last-resort kill reaches the workers through the group id.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(process, port, log_path)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=5)


def _wait_ready(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not ready in {SERVER_START_TIMEOUT_S} s:\n{_log_tail(log_path)}")


def _smoke(port: int, path: str, token: str, body: dict[str, Any], log_path: Path) -> None:
    """One request by hand, so a broken setup fails with its answer instead of a wrk table."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        method="POST",
    )
    try:
        # The URL is built here from a loopback http:// address, never from input.
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            if reply.status == 201:
                return
            detail = f"{reply.status} {reply.read()[:500]!r}"
    except urllib.error.HTTPError as exc:
        detail = f"{exc.code} {exc.read()[:500]!r}"
    raise RuntimeError(f"POST {path} answered {detail}\n{_log_tail(log_path)}")


def _wrk(
    wrk: str,
    *,
    port: int,
    path: str,
    connections: int,
    seconds: int,
    run_id: str,
    fixture: Fixture,
) -> tuple[dict[str, Any], set[str]]:
    """Run wrk with the Lua script; returns its summary and the ids of the 2xx responses."""
    ids_file = WORK_DIR / f"ids-{run_id}.txt"
    env = {
        **os.environ,
        "BENCH_BODIES": str(fixture.bodies_file),
        "BENCH_TOKEN": fixture.token,
        "BENCH_PATH": path,
        "BENCH_ID": run_id,
        "BENCH_IDS_OUT": str(ids_file),
    }
    command = [
        wrk,
        "--latency",
        "-t",
        str(min(WRK_THREADS, connections)),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    (WORK_DIR / f"wrk-{run_id}.txt").write_text(done.stdout + done.stderr)
    marker = "BENCH_RESULT "
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1].removeprefix(marker))
    ok_ids = set(ids_file.read_text().split())
    return result, ok_ids


def _measure(
    wrk: str,
    *,
    port: int,
    endpoint: Endpoint,
    connections: int,
    tag: str,
    fixture: Fixture,
    master: int,
    database_name: str,
    seconds: int,
) -> Run:
    run_id = f"b{tag}-{endpoint.key}-c{connections}-"  # the dash: c1 is no prefix of c16
    before = _settled_row_count(fixture.user)
    with _cpu_meter(master, database_name) as cpu:
        result, ok_ids = _wrk(
            wrk,
            port=port,
            path=endpoint.path,
            connections=connections,
            seconds=seconds,
            run_id=run_id,
            fixture=fixture,
        )
    after = _settled_row_count(fixture.user)
    row_ids = {
        request_id.removeprefix(endpoint.row_prefix)
        for request_id in _row_request_ids(fixture.user, endpoint.row_prefix + run_id)
    }
    return Run(
        endpoint=endpoint,
        connections=connections,
        result=result,
        rows_written=after - before,
        # wrk stops its clock with up to one request per connection unanswered; the server
        # still answers and logs them, so they are rows without a response wrk counted.
        in_flight=len(row_ids - ok_ids),
        answered_without_row=len(ok_ids - row_ids),
        cpu=cpu[0],
    )


def _machine_ms(run: Run) -> float:
    cpu = run.cpu
    return (cpu.workers_s + cpu.database_s + cpu.wrk_s) * 1000 / max(run.rows_written, 1)


def _combined(rounds: list[Run]) -> Run:
    """The rounds of one endpoint at one connection count as one run: counts, times and CPU
    added up; p50, p90 and p99 are the medians of the rounds' own."""
    first = rounds[0]
    result = dict(first.result)
    for key in (
        "duration_us",
        "requests",
        "sent",
        "non2xx",
        "connect_errors",
        "read_errors",
        "write_errors",
        "timeouts",
    ):
        result[key] = sum(run.result[key] for run in rounds)
    for key in ("p50_us", "p90_us", "p99_us"):
        result[key] = statistics.median(run.result[key] for run in rounds)
    result["max_us"] = max(run.result["max_us"] for run in rounds)
    result["first_error"] = next(
        (run.result["first_error"] for run in rounds if run.result["first_error"]), ""
    )
    cpu = CpuUse(
        seconds=sum(run.cpu.seconds for run in rounds),
        workers_s=sum(run.cpu.workers_s for run in rounds),
        wrk_s=sum(run.cpu.wrk_s for run in rounds),
        database_s=sum(run.cpu.database_s for run in rounds),
        machine_busy_s=sum(run.cpu.machine_busy_s for run in rounds),
    )
    return Run(
        endpoint=first.endpoint,
        connections=first.connections,
        result=result,
        rows_written=sum(run.rows_written for run in rounds),
        in_flight=sum(run.in_flight for run in rounds),
        answered_without_row=sum(run.answered_without_row for run in rounds),
        cpu=cpu,
        round_rps=[run.rps for run in rounds],
    )


# --- report ---------------------------------------------------------------------------------


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _report(
    runs: list[Run],
    *,
    database: Database,
    fixture: Fixture,
    wrk: str,
    load_at_start: str,
    commit_floor_ms: float | None,
    shadow: tuple[str, int],
) -> str:
    by = {(run.endpoint.key, run.connections): run for run in runs}
    lines = [
        "| endpoint | conns | req/s | p50 ms | p99 ms | non-2xx | socket errors | 2xx "
        "| audit rows written | in flight at stop | 2xx without row | rows = 2xx "
        "| worker CPU ms/req | PostgreSQL CPU ms/req | other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.endpoint.title} | {run.connections} | {run.rps:,.0f} | "
            f"{run.ms('p50_us'):.2f} | {run.ms('p99_us'):.2f} | {run.non2xx} | "
            f"{run.socket_errors} | {run.ok:,} | {run.rows_written:,} | {run.in_flight} | "
            f"{run.answered_without_row} | {'yes' if run.audit_matches else '**no**'} | "
            f"{run.worker_cpu_ms:.2f} | {run.database_cpu_ms:.2f} | {run.cpu.others_cores:.2f} |"
        )
    top = max(CONNECTIONS)
    ours, reference = by[("ours", top)], by[("reference", top)]
    ratio = ours.rps / reference.rps
    ours_runs = [run for run in runs if run.endpoint.key in ("ours", "shadow")]
    p50_single = by[("ours", 1)].ms("p50_us")
    errors = sum(run.non2xx + run.socket_errors for run in ours_runs)
    audit_ok = all(run.audit_matches for run in ours_runs)
    first_error = next((r.result["first_error"] for r in runs if r.result["first_error"]), "")
    shadow_label, shadow_rows = shadow
    shadow_runs = [run for run in runs if run.endpoint.key == "shadow"]
    shadow_written = sum(run.rows_written for run in shadow_runs)
    shadow_p50 = by[("shadow", 1)].ms("p50_us")
    shadow_lines = [
        f"Shadow: with {shadow_label} in shadow, every request is also scored by it and its "
        f"answer stored on the audit row ({shadow_rows:,} rows with a shadow answer for "
        f"{shadow_written:,} rows written in the shadow runs). p50 at 1 connection "
        f"{shadow_p50:.2f} ms with the shadow vs {p50_single:.2f} ms without "
        f"({shadow_p50 - p50_single:+.2f} ms); at {top} connections "
        f"{by[('shadow', top)].rps:,.0f} vs {ours.rps:,.0f} req/s.",
    ]

    def met(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return "\n".join(
        [
            "## Prediction API under load (gunicorn + wrk)",
            "",
            f"`POST /api/v1/predictions/` against a naive reference endpoint, both served by one "
            f"gunicorn ({_version([sys.executable, '-m', 'gunicorn', '--version'])}, 2 "
            f"gthread workers x 4 threads from gunicorn.conf.py, a listening socket per "
            f"worker: GUNICORN_REUSE_PORT={os.environ.get('GUNICORN_REUSE_PORT', 'on')}, "
            f"production settings, OMP_NUM_THREADS=1) on 127.0.0.1, same token "
            f"authentication, same database, same audit table. Model: {fixture.model_label} "
            f"(trained by the bench on 60,000 synthetic rows; backend {fixture.backend}).",
            "",
            f"- database: {database.description}"
            + (
                f"; one durable single-row INSERT + COMMIT takes {commit_floor_ms:.2f} ms "
                "(median of 200, the WAL flush): a floor under every audited prediction"
                if commit_floor_ms is not None
                else ""
            ),
            "- cache (throttle counters): "
            + (
                "Redis from REDIS_URL"
                if os.environ.get("REDIS_URL")
                else "local memory per process (REDIS_URL not set)"
            ),
            f"- load: {_version([wrk, '--version'])}, {WRK_THREADS} thread, {WARMUP_S} s "
            f"warm-up per endpoint, then per connection count {ROUNDS} rounds of {ROUND_S} s "
            "per endpoint, floodsite and the reference taking turns (ABBA order), added up "
            f"per row (p50 and p99: the median of the rounds'); the shadow rows are one run of "
            f"{RUN_S} s each. Each request POSTs one of "
            f"{BODY_ROWS} synthetic rows (cycled) with `Authorization: Token` and a unique "
            "`X-Request-ID`. **wrk and gunicorn share the machine's 2 cores**, so every "
            "number includes the load generator's CPU.",
            "- reference: DRF APIView that builds a pandas DataFrame from `inputs`, calls "
            "scikit-learn `predict_proba` on the production pipeline (joblib-loaded at import), "
            "and saves one row with the ORM's own INSERT (`Prediction.objects.bulk_create` of "
            "one row: `objects.create` would call `Prediction.save`, which since the single "
            "audit writer is the product's prepared INSERT); no explanation, no range check, "
            "no throttle (floodsite's endpoint runs its throttle on every call).",
            "- audit: rows of the bench user counted before and after each run (after the "
            "server went idle) and every 2xx response's X-Request-ID matched to its row. "
            "*In flight at stop* are requests wrk had sent when its clock ran out: the server "
            "answered and logged them but wrk never counted the answer, so rows written = 2xx "
            "+ in flight. *2xx without row* must be 0.",
            "- CPU: *worker CPU ms/req* is the gunicorn workers' CPU time per audit row written, "
            "*PostgreSQL CPU ms/req* that of the backends serving the bench database (and of "
            "any PostgreSQL process that ended during the run: a backend whose connection "
            "Django retired, an autovacuum worker); "
            "*other load* is the CPU (in cores, of 2) that processes other than gunicorn, wrk "
            "and the bench database's PostgreSQL backends used during the run. When it is "
            f"above zero the machine was shared (load average at start: {load_at_start}) and "
            "req/s and latency are lower than on a quiet machine.",
            "",
            *lines,
            "",
            f"Throughput ours / reference at {top} connections: **{ratio:.2f}x** "
            f"({ours.rps:,.0f} vs {reference.rps:,.0f} req/s). Round by round (each pair run "
            "back to back): "
            + ", ".join(
                f"{a:,.0f} vs {b:,.0f} ({a / b:.2f}x)"
                for a, b in zip(ours.round_rps, reference.round_rps, strict=True)
            )
            + ".",
            "",
            f"CPU per answered request at {top} connections (gunicorn workers + the bench "
            f"database's PostgreSQL backends + wrk, summed over the same rounds): floodsite "
            f"{_machine_ms(ours):.2f} ms, reference {_machine_ms(reference):.2f} ms "
            f"(**{_machine_ms(reference) / _machine_ms(ours):.2f}x**). Unlike req/s this does "
            "not count time the processes sat idle waiting on each other, so it is what the "
            "ratio would be with both endpoints busy on every core.",
            "",
            "| target (this 2-core machine) | measured | |",
            "|---|---|---|",
            f"| ≥ {TARGET_RATIO:g}x the reference's req/s at {top} connections | {ratio:.2f}x "
            f"| {met(ratio >= TARGET_RATIO)} |",
            f"| p50 ≤ {TARGET_P50_MS:g} ms at 1 connection | {p50_single:.2f} ms | "
            f"{met(p50_single <= TARGET_P50_MS)} |",
            f"| 0 errors (non-2xx + socket errors) | {errors} | {met(errors == 0)} |",
            f"| audit rows = 2xx responses | "
            f"{'every 2xx has its row' if audit_ok else 'mismatch'} | {met(audit_ok)} |",
            *(["", f"First non-2xx answer: `{first_error}`"] if first_error else []),
            "",
            *shadow_lines,
            "",
            f"Python {platform.python_version()}; gunicorn log and raw wrk output in "
            "`var/bench/api/`.",
        ]
    )


def bench_api() -> str:
    """Throughput, latency, errors and audit completeness of the prediction API."""
    wrk = _ensure_wrk()
    load_at_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    # Production serves collected static files; an empty folder spares a warning per worker.
    (WORK_DIR / "static").mkdir(parents=True)
    database = _choose_database()
    try:
        env = _server_env(database)
        fixture = _prepare(env)
        commit_floor_ms = _commit_floor_ms()
        port = _free_port()
        log_path = WORK_DIR / "gunicorn.log"
        tag = time.strftime("%H%M%S")
        runs: list[Run] = []
        database_name = urlsplit(database.url).path.strip("/") if "postgres" in database.url else ""
        with _gunicorn(env, port, log_path) as server:
            for endpoint in ENDPOINTS:
                _smoke(port, endpoint.path, fixture.token, fixture.sample_body, log_path)
                # Warm-up: both workers load the URLs, the model and a database connection.
                _wrk(
                    wrk,
                    port=port,
                    path=endpoint.path,
                    connections=max(CONNECTIONS),
                    seconds=WARMUP_S,
                    run_id=f"w{tag}-{endpoint.key}",
                    fixture=fixture,
                )
            for connections in CONNECTIONS:
                rounds: dict[str, list[Run]] = {endpoint.key: [] for endpoint in ENDPOINTS}
                for number in range(ROUNDS):
                    # ABBA: neither endpoint always runs first, on a fresher or busier machine.
                    order = ENDPOINTS if number % 2 == 0 else ENDPOINTS[::-1]
                    for endpoint in order:
                        print(
                            f"bench: api {endpoint.key} c={connections} "
                            f"round {number + 1}/{ROUNDS} ...",
                            flush=True,
                        )
                        rounds[endpoint.key].append(
                            _measure(
                                wrk,
                                port=port,
                                endpoint=endpoint,
                                connections=connections,
                                tag=f"{tag}r{number}",
                                fixture=fixture,
                                master=server.pid,
                                database_name=database_name,
                                seconds=ROUND_S,
                            )
                        )
                runs.extend(_combined(rounds[endpoint.key]) for endpoint in ENDPOINTS)
            shadow_label = _shadow_start()
            _wrk(
                wrk,
                port=port,
                path=OUR_PATH,
                connections=max(CONNECTIONS),
                seconds=WARMUP_S,
                run_id=f"w{tag}-shadow",
                fixture=fixture,
            )
            shadow_rows_before = _shadow_row_count(fixture.user)
            for connections in CONNECTIONS:
                print(f"bench: api shadow c={connections} ...", flush=True)
                runs.append(
                    _measure(
                        wrk,
                        port=port,
                        endpoint=SHADOW,
                        connections=connections,
                        tag=tag,
                        fixture=fixture,
                        master=server.pid,
                        database_name=database_name,
                        seconds=RUN_S,
                    )
                )
            shadow_rows = _shadow_row_count(fixture.user) - shadow_rows_before
        return _report(
            runs,
            database=database,
            fixture=fixture,
            wrk=wrk,
            load_at_start=load_at_start,
            commit_floor_ms=commit_floor_ms,
            shadow=(shadow_label, shadow_rows),
        )
    finally:
        from django.conf import settings

        if settings.configured:
            from django.db import connections as django_connections

            # A throwaway database can only be dropped once this process lets go of it.
            django_connections.close_all()
        if database.cleanup is not None:
            database.cleanup()
