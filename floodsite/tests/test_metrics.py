"""/metrics: who may scrape, what the families say, many processes, workers, a stopped database."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from floodsite.tests.servers import free_port, gunicorn_command, local_var, worker_open_files
from modelops import services
from modelops.models import Alert, AlertKind, AlertSeverity, AlertStatus
from modelops.tests.test_monitoring import predict, site_days
from predictions.models import BatchJob
from predictions.tests import test_tasks as worker_tests
from predictions.tests.test_tasks import start_worker, stop, submit, wait_for, worker_env

# The worker tests' fixtures, used here as they are (analyst, api and typical_inputs come
# from the root conftest).
batch_client = worker_tests.batch_client
clean_broker = worker_tests.clean_broker

ROOT = Path(__file__).resolve().parents[2]
URL = "/metrics"
PREDICT = "/api/v1/predictions/"
TOKEN = "scrape-token-0123456789abcdef"

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **extra) -> Samples:
    response = client.get(URL, **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """Sum over every series of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == metric and wanted <= have)


# --- who may scrape -----------------------------------------------------------------------


def test_another_address_without_a_token_is_refused_in_the_error_format(client, db):
    response = client.get(URL, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "permission_denied"
    assert "METRICS_TOKEN" in body["error"]["message"]
    assert "Authorization" in body["error"]["fields"]


def test_loopback_may_scrape_without_a_token_and_needs_no_sign_in(client, db):
    samples = scrape(client)
    assert value(samples, "floodsite_database_up") == 1


def test_the_right_bearer_token_works_from_anywhere_and_a_wrong_one_nowhere(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **outside).status_code == 200
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}x", **outside).status_code == 403
    # A wrong token is refused even from an address that needs none.
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    assert client.get(URL, HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 403
    assert client.get(URL, **outside).status_code == 403


def test_no_token_is_accepted_when_none_is_configured(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_allowed_networks_and_proxied_requests(client, db, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "2001:db8::/32"]
    assert client.get(URL, REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get(URL, REMOTE_ADDR="2001:db8::7").status_code == 200
    assert client.get(URL, REMOTE_ADDR="127.0.0.1").status_code == 403
    # Through a proxy the peer address is the proxy's, so only the token counts.
    proxied = client.get(URL, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert proxied.status_code == 403


def test_only_get_is_allowed(client, db):
    assert client.post(URL).status_code == 405


@pytest.mark.slow
def test_malformed_metrics_settings_stop_the_process_naming_them(tmp_path):
    from floodsite.tests.test_settings import run_python

    probe = "import django; django.setup()"
    result = run_python(probe, {"METRICS_ALLOWED_IPS": "127.0.0.1,intranet"}, tmp_path)
    assert result.returncode == 2
    assert "METRICS_ALLOWED_IPS" in result.stderr and "'intranet'" in result.stderr
    result = run_python(probe, {"METRICS_TOKEN": "short"}, tmp_path)
    assert result.returncode == 2
    assert "METRICS_TOKEN" in result.stderr and "16 characters" in result.stderr
    (tmp_path / "file").write_text("not a folder")
    # The folder is made when the process first records something, not at import.
    record = (
        probe + "; from floodsite import metrics; metrics.prediction_observed('api', 'v1', 'low')"
    )
    result = run_python(record, {"METRICS_DIR": str(tmp_path / "file" / "metrics")}, tmp_path)
    assert result.returncode == 2
    assert "METRICS_DIR cannot be created" in result.stderr


# --- what a scrape says -------------------------------------------------------------------


def test_a_prediction_through_the_api_shows_in_requests_predictions_and_models(
    client, api, typical_inputs, production_model
):
    before = scrape(client)

    answer = api.post(PREDICT, {"inputs": typical_inputs}, format="json")

    assert answer.status_code == 201
    after = scrape(client)
    version = str(production_model)
    band = answer.json()["risk_band"]
    counted = {"source": "api", "model_version": version, "risk_band": band}
    name = "floodsite_predictions_total"
    assert value(after, name, **counted) - value(before, name, **counted) == 1
    route = {"method": "POST", "route": PREDICT}
    name = "floodsite_http_request_duration_seconds_count"
    assert value(after, name, **route) - value(before, name, **route) == 1
    name = "floodsite_http_request_duration_seconds_bucket"
    assert value(after, name, **route, le="+Inf") - value(before, name, **route, le="+Inf") == 1
    name = "floodsite_http_responses_total"
    assert value(after, name, **route, status="201") - value(before, name, **route, status="201")
    # The scrape itself is timed under its route, not its raw path.
    assert value(after, "floodsite_http_responses_total", method="GET", route=URL, status="200")
    info = {"name": production_model.name, "model_version": version, "stage": "production"}
    assert total(after, "floodsite_model_info", **info) == 1
    assert total(after, "floodsite_model_load_seconds_count", model_version=version) >= 1


def test_errors_are_counted_by_their_error_code(client, api, typical_inputs):
    before = scrape(client)

    bad = api.post(PREDICT, {"inputs": {**typical_inputs, "slope_deg": "steep"}}, format="json")
    missing = api.get("/api/v1/no-such-thing/")

    assert bad.status_code == 400 and missing.status_code == 404
    after = scrape(client)
    code = bad.json()["error"]["code"]
    name = "floodsite_http_errors_total"
    for labels in ({"code": code, "status": "400"}, {"code": "not_found", "status": "404"}):
        assert value(after, name, **labels) - value(before, name, **labels) == 1, labels
    # An unknown path is one series, whatever the path was.
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    name = "floodsite_http_responses_total"
    assert value(after, name, **unmatched) - value(before, name, **unmatched) == 1
    assert not [labels for n, labels in after if ("route", "/api/v1/no-such-thing/") in labels]


def test_doubled_rainfall_shows_as_drift_and_an_open_alert_after_one_check(
    client, production_model, analyst
):
    before = scrape(client)
    assert total(before, "floodsite_alerts_open") == 0
    assert not total(before, "floodsite_drift_psi")

    predict(analyst, site_days(400, seed=11, rain_factor=2.0))
    services.monitoring_report_create(window_minutes=60)

    after = scrape(client)
    version = str(production_model)
    psi = {
        dict(labels)["feature"]: v
        for (name, labels), v in after.items()
        if name == "floodsite_drift_psi" and dict(labels)["model_version"] == version
    }
    assert psi["rainfall_72h_mm"] > 0.2
    assert psi["elevation_m"] < 0.1
    assert value(after, "floodsite_drift_rows", model_version=version) == 400
    assert total(after, "floodsite_alerts_open", kind="drift", status="open") >= 1
    checked_at = value(after, "floodsite_monitoring_last_check_timestamp_seconds")
    assert abs(checked_at - timezone.now().timestamp()) < 120
    name = "floodsite_predictions_total"
    added = total(after, name, source="api") - total(before, name, source="api")
    assert added == 400


def test_open_alerts_are_counted_by_kind_severity_and_status(client, db):
    Alert.objects.create(kind=AlertKind.LATENCY, severity=AlertSeverity.CRITICAL, message="slow")
    Alert.objects.create(
        kind=AlertKind.LATENCY,
        severity=AlertSeverity.CRITICAL,
        status=AlertStatus.ACKNOWLEDGED,
        subject="other",
        message="slow",
    )
    Alert.objects.create(
        kind=AlertKind.NO_TRAFFIC, status=AlertStatus.RESOLVED, message="quiet, then fine"
    )

    samples = scrape(client)

    name = "floodsite_alerts_open"
    latency = {"kind": "latency", "severity": "critical"}
    assert value(samples, name, **latency, status="open") == 1
    assert value(samples, name, **latency, status="acknowledged") == 1
    # Every kind is listed, at zero when nothing is open, so alert rules never see "absent".
    quiet = {"kind": "no_traffic", "severity": "warning", "status": "open"}
    assert (name, frozenset(quiet.items())) in samples
    assert value(samples, name, **quiet) == 0


# --- many processes -----------------------------------------------------------------------

RECORD = """
import sys
from floodsite import metrics
if sys.argv[1] != "-":
    metrics.process_group_start(sys.argv[1])
for _ in range(int(sys.argv[2])):
    metrics.prediction_observed("api", "mp v1", "high")
metrics.batch_chunk_observed(model_version="mp v1", bands=["low"] * 5, failed=1, seconds=0.5)
"""


def record_in_processes(folder: Path, tmp_path: Path, *runs: tuple[str, int]) -> None:
    """Run one Python process per (group, count) at the same time, all writing to ``folder``."""
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "FLOODSITE_VAR_DIR": str(tmp_path / "var"),
        "METRICS_DIR": str(folder),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RECORD, group, str(count)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for group, count in runs
    ]
    for process in processes:
        _, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors


@pytest.mark.slow
def test_counts_of_separate_processes_add_up_in_one_scrape(client, db, settings, tmp_path):
    folder = tmp_path / "metrics"
    record_in_processes(folder, tmp_path, ("-", 3), ("-", 4))
    settings.METRICS_DIR = folder

    samples = scrape(client)

    labels = {"source": "api", "model_version": "mp v1", "risk_band": "high"}
    assert value(samples, "floodsite_predictions_total", **labels) == 7
    assert value(samples, "floodsite_batch_rows_total", outcome="scored") == 10
    assert value(samples, "floodsite_batch_rows_total", outcome="failed") == 2
    count = "floodsite_batch_chunk_seconds_count"
    assert value(samples, count, model_version="mp v1") == 2
    assert value(samples, "floodsite_batch_rows_per_second", model_version="mp v1") == 12


RECORD_ACROSS_FORK = """
import os
from floodsite import metrics
for _ in range(3):
    metrics.prediction_observed("api", "mp v1", "high")
child = os.fork()
if child == 0:
    for _ in range(4):
        metrics.prediction_observed("api", "mp v1", "high")
    os._exit(0)
os.waitpid(child, 0)
metrics.prediction_observed("api", "mp v1", "high")
"""


def test_a_forked_child_counts_in_its_own_file_and_the_parent_keeps_its_counts(
    client, db, settings, tmp_path
):
    # gunicorn and Celery fork their workers after the parent may have counted something.
    folder = tmp_path / "metrics"
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "FLOODSITE_VAR_DIR": str(tmp_path / "var"),
        "METRICS_DIR": str(folder),
    }
    done = subprocess.run(
        [sys.executable, "-c", RECORD_ACROSS_FORK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("counter_*.db"))) == 2
    settings.METRICS_DIR = folder

    samples = scrape(client)

    labels = {"source": "api", "model_version": "mp v1", "risk_band": "high"}
    assert value(samples, "floodsite_predictions_total", **labels) == 3 + 4 + 1


@pytest.mark.slow
def test_a_fresh_start_of_a_group_clears_only_that_groups_counts(client, db, settings, tmp_path):
    folder = tmp_path / "metrics"
    record_in_processes(folder, tmp_path, ("worker", 5), ("-", 2))
    record_in_processes(folder, tmp_path, ("worker", 1))
    settings.METRICS_DIR = folder

    samples = scrape(client)

    labels = {"source": "api", "model_version": "mp v1", "risk_band": "high"}
    assert value(samples, "floodsite_predictions_total", **labels) == 1 + 2


@pytest.mark.slow
def test_batch_rows_scored_by_a_celery_worker_appear_in_the_scrape(
    client, batch_client, production_model, clean_broker, tmp_path, settings
):
    folder = tmp_path / "metrics"
    log = tmp_path / "worker.log"
    worker = start_worker(
        {**worker_env(Path(settings.MEDIA_ROOT)), "METRICS_DIR": str(folder)}, log
    )
    try:
        job = submit(batch_client, 4_000, tmp_path / "sites.csv")
        wait_for(
            lambda: BatchJob.objects.get(pk=job.pk).finished, timeout=120, what="the job", log=log
        )
    finally:
        stop(worker)
    settings.METRICS_DIR = folder

    samples = scrape(client)

    version = str(production_model)
    assert value(samples, "floodsite_batch_rows_total", outcome="scored") == 3_999
    assert value(samples, "floodsite_batch_rows_total", outcome="failed") == 1
    assert total(samples, "floodsite_predictions_total", source="batch") == 3_999
    chunks = value(samples, "floodsite_batch_chunk_seconds_count", model_version=version)
    assert chunks == BatchJob.objects.get(pk=job.pk).chunks_total
    assert total(samples, "floodsite_model_load_seconds_count", model_version=version) >= 1


# --- a stopped database, under gunicorn ---------------------------------------------------


def _heartbeat_files(master: int) -> list[str]:
    """The gunicorn heartbeat file each worker of ``master`` holds open (unlinked)."""
    return [
        target.removesuffix(" (deleted)")
        for targets in worker_open_files(master).values()
        for target in targets
        if "wgunicorn-" in target
    ]


def _workers_holding(master: int, port: int, client_ports: set[int]) -> dict[int, int]:
    """How many of the clients' connections (by their local port) each worker holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if local_port == port and remote_port in client_ports:
                    inodes.add(f"socket:[{fields[9]}]")
    return {
        pid: sum(target in inodes for target in targets)
        for pid, targets in worker_open_files(master).items()
    }


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_gunicorn_on_a_unix_socket_keeps_every_worker_reachable(tmp_path):
    """A socket per worker is for TCP only: on a Unix socket each worker would replace the
    file the previous one bound, leaving all but the last unreachable."""
    path = tmp_path / "web.sock"
    env = {
        "PATH": os.environ["PATH"],
        "FLOODSITE_VAR_DIR": str(local_var(tmp_path / "var")),
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "GUNICORN_BIND": f"unix:{path}",
    }
    command = [c for c in gunicorn_command(0, workers=2) if c not in ("--bind", "127.0.0.1:0")]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
                client.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
                if b" 200 " in client.recv(64).split(b"\r\n", 1)[0]:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "no answer"
            time.sleep(0.3)
        time.sleep(1)  # both workers booted
        bound = {
            f"socket:[{fields[6]}]"
            for fields in (line.split() for line in Path("/proc/net/unix").read_text().splitlines())
            if len(fields) >= 8 and fields[7] == str(path)
        }
        workers = worker_open_files(server.pid)
        listening = [bound & set(targets) for targets in workers.values()]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert len(workers) == 2, output[-2000:]
    assert len(bound) == 1, (bound, output[-2000:])
    # Both workers listen on the one socket the file names.
    assert all(listening), (listening, output[-2000:])


@pytest.mark.slow
def test_gunicorn_workers_add_up_and_a_dead_database_is_a_gauge_not_a_500(tmp_path):
    """Two gunicorn workers with our config; the database refuses connections."""
    port = free_port()
    var = local_var(tmp_path / "var")
    env = {
        "PATH": os.environ["PATH"],
        "FLOODSITE_VAR_DIR": str(var),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/floodsite",
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
    }
    # Counts a previous run of the web server left behind, which a fresh start clears.
    stale = subprocess.run(
        [sys.executable, "-c", RECORD, "web", "9"], cwd=ROOT, env=env, capture_output=True
    )
    assert stale.returncode == 0, stale.stderr
    assert any((var / "metrics").glob("counter_web-*.db"))
    server = subprocess.Popen(
        gunicorn_command(port, workers=2),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        assert status == 200
        for _ in range(19):
            assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        # A client pool opens its keep-alive connections at once: they spread over both
        # workers (GUNICORN_REUSE_PORT) instead of all landing on whichever woke first.
        pool = [http.client.HTTPConnection("127.0.0.1", port, timeout=20) for _ in range(16)]
        for connection in pool:
            connection.connect()
        for connection in pool:
            connection.request("GET", "/healthz")
        for connection in pool:
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
        held = _workers_holding(server.pid, port, {c.sock.getsockname()[1] for c in pool})
        for connection in pool:
            connection.close()

        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        heartbeats = _heartbeat_files(server.pid)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    assert status == 200, body + output[-3000:]
    assert sum(held.values()) == 16 and len(held) == 2, held
    assert min(held.values()) >= 1, held
    # Each worker touches its heartbeat file about twice per request: kept on tmpfs.
    assert len(heartbeats) == 2, heartbeats
    assert all(path.startswith("/dev/shm/wgunicorn-") for path in heartbeats), heartbeats
    assert "Traceback" not in body
    samples = parse(body)
    assert value(samples, "floodsite_database_up") == 0
    assert not total(samples, "floodsite_alerts_open")
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(samples, "floodsite_http_responses_total", **healthz) == 20 + 16
    assert not total(samples, "floodsite_predictions_total", model_version="mp v1")
