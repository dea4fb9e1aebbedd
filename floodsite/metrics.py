"""Prometheus metrics: their definitions, the calls services make, the middleware and /metrics.

Every process (gunicorn workers, Celery workers, one-off commands) writes its counts to small
memory-mapped files in METRICS_DIR (prometheus_client's multiprocess mode); a scrape of
``/metrics`` adds up the files of every process and asks the database, at that moment, for what
it holds: open alerts, the latest monitoring report's drift, the versions in each stage.

Files are named ``<kind>_<group>-<host>-<pid>.db``. The group is ``web`` for gunicorn workers
(``gunicorn.conf.py``), ``worker`` for Celery workers (``floodsite/celery.py``) and ``other``
for anything else; a fresh start of a group clears that group's files on this host, so counts
start again from zero the way a single process's would. The host in the name keeps containers
that share the folder (their process ids overlap) from writing to each other's files.

A scrape while the database is down still answers 200: ``floodsite_database_up`` is 0 and the
database-derived families are missing, so the counts of the processes are never lost to an
outage, and an alert rule on ``floodsite_database_up == 0`` says what is wrong.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
import socket
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from floodsite.settings_env import refuse

GROUPS = ("web", "worker", "other")
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:63] or "host"


class _Process:
    """Who this process is in file names; forgotten after a fork or a change of group."""

    group = "other"
    identifier = ""


def process_identifier() -> str:
    """``<group>-<host>-<pid>``: distinct for every process writing to METRICS_DIR.

    prometheus_client asks on every increment; the answer is kept until a fork (the child
    forgets it) instead of asking the kernel for the pid each time.
    """
    identifier = _Process.identifier
    if not identifier:
        identifier = _Process.identifier = f"{_Process.group}-{_HOST}-{os.getpid()}"
    return identifier


def _forget_identifier() -> None:
    _Process.identifier = ""


os.register_at_fork(after_in_child=_forget_identifier)


def metrics_dir() -> Path:
    return Path(settings.METRICS_DIR)


def metrics_dir_ready() -> None:
    """Make METRICS_DIR if needed; a folder that cannot be made or written stops the process
    with one line naming the variable."""
    folder = metrics_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        refuse("METRICS_DIR", f"cannot be created: {exc}")
    if not os.access(folder, os.W_OK):
        refuse("METRICS_DIR", f"is not writable: {folder}")


_MultiProcessValue = values.MultiProcessValue(process_identifier)


class _Value(_MultiProcessValue):  # type: ignore[misc,valid-type]
    """prometheus_client's file-backed value, which opens its file in METRICS_DIR when a
    labelled metric first records; the folder is made then, not when this module is imported
    (importing the settings and setting Django up write nothing)."""

    _folder_ready = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not _Value._folder_ready:
            metrics_dir_ready()
            _Value._folder_ready = True
        super().__init__(*args, **kwargs)


# Multiprocess mode, set here rather than left to prometheus_client's import-time look at the
# environment, so it holds whichever module imported the library first. The files are opened
# lazily (every metric has labels), under the directory the environment names at that moment.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir())
values.ValueClass = _Value


def process_group_start(group: str) -> None:
    """A server (gunicorn master, Celery worker) starts fresh: drop its group's old files here.

    Called before the processes that record anything are forked, so no live file is removed.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown metrics group {group!r}; one of {', '.join(GROUPS)}")
    _Process.group = group
    _Process.identifier = ""  # the next value opened takes the new name
    own = re.compile(rf"^[a-z]+(?:_[a-z]+)?_{group}-{re.escape(_HOST)}-\d+\.db$")
    folder = metrics_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if own.match(path.name):
            path.unlink(missing_ok=True)


def process_dead(pid: int) -> None:
    """A worker process of this group exited: its live gauges stop counting."""
    multiprocess.mark_process_dead(f"{_Process.group}-{_HOST}-{pid}", str(metrics_dir()))


# --- definitions --------------------------------------------------------------------------
# registry=None: in multiprocess mode only the files are read; a process's own registry would
# show that one process's counts.

REQUEST_SECONDS = Histogram(
    "floodsite_http_request_duration_seconds",
    "Time from the first middleware to the response, by method and URL route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
RESPONSES = Counter(
    "floodsite_http_responses",
    "Responses by method, URL route and HTTP status.",
    ["method", "route", "status"],
    registry=None,
)
ERRORS = Counter(
    "floodsite_http_errors",
    "4xx and 5xx responses by the error code of the body (http_<status> when it has none).",
    ["code", "status"],
    registry=None,
)
PREDICTIONS = Counter(
    "floodsite_predictions",
    "Predictions logged, by source, model version and risk band.",
    ["source", "model_version", "risk_band"],
    registry=None,
)
BATCH_ROWS = Counter(
    "floodsite_batch_rows",
    "Batch rows processed: scored (and logged) or failed (reported as an error row).",
    ["outcome"],
    registry=None,
)
BATCH_CHUNK_SECONDS = Histogram(
    "floodsite_batch_chunk_seconds",
    "Time to read, validate, score and log one batch chunk.",
    ["model_version"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=None,
)
BATCH_ROWS_PER_SECOND = Gauge(
    "floodsite_batch_rows_per_second",
    "Rows per second of the most recently finished batch chunk (any worker).",
    ["model_version"],
    multiprocess_mode="mostrecent",
    registry=None,
)
MODEL_LOAD_SECONDS = Histogram(
    "floodsite_model_load_seconds",
    "Time to verify and load a model version's artifact, by version and inference backend.",
    ["model_version", "backend"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=None,
)
MODEL_LOADED_AT = Gauge(
    "floodsite_model_loaded_timestamp_seconds",
    "When a process last loaded this model version (Unix time), by version and backend.",
    ["model_version", "backend"],
    multiprocess_mode="mostrecent",
    registry=None,
)


# --- what services call -------------------------------------------------------------------

_prediction_children: dict[tuple[str, str, str], Any] = {}


def _prediction_counter(source: str, model_version: str, band: str) -> Any:
    key = (source, model_version, band)
    child = _prediction_children.get(key)
    if child is None:
        child = _prediction_children[key] = PREDICTIONS.labels(source, model_version, band)
    return child


def prediction_observed(source: str, model_version: str, band: str) -> None:
    """One prediction was logged (called after its audit row is saved)."""
    _prediction_counter(source, model_version, band).inc()


def predictions_observed(source: str, model_version: str, bands: Iterable[str]) -> None:
    """Several predictions were logged, one risk band each."""
    for band, n in Tally(bands).items():
        _prediction_counter(source, model_version, str(band)).inc(n)


def batch_chunk_observed(
    *, model_version: str, bands: Iterable[str], failed: int, seconds: float
) -> None:
    """A batch chunk committed: its scored rows by band, its failed rows, its time."""
    tally = Tally(bands)
    scored = sum(tally.values())
    for band, n in tally.items():
        _prediction_counter("batch", model_version, str(band)).inc(n)
    BATCH_ROWS.labels("scored").inc(scored)
    if failed:
        BATCH_ROWS.labels("failed").inc(failed)
    BATCH_CHUNK_SECONDS.labels(model_version).observe(seconds)
    if seconds > 0:
        BATCH_ROWS_PER_SECOND.labels(model_version).set((scored + failed) / seconds)


def model_loaded(model_version: str, backend: str, seconds: float) -> None:
    """A process verified and loaded a model version."""
    MODEL_LOAD_SECONDS.labels(model_version, backend).observe(seconds)
    MODEL_LOADED_AT.labels(model_version, backend).set(time.time())


# --- requests -----------------------------------------------------------------------------

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route(request: HttpRequest) -> str:
    """The URL pattern that answered (bounded label values), never the raw path."""
    match = request.resolver_match
    if match is not None:
        return "/" + match.route
    if request.path_info.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


def _error_code(response: HttpResponse) -> str:
    """The ``error.code`` of the one error format, else ``http_<status>``."""
    body = getattr(response, "data", None)  # a DRF Response, before rendering
    if (
        body is None
        and response.get("Content-Type", "").startswith("application/json")
        and not response.streaming
        and len(response.content) <= 65_536
    ):
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code:
        return code[:60]
    return f"http_{response.status_code}"


# Per (method, route): the histogram child and the counter children by status, so a request
# costs two dictionary lookups instead of two label resolutions.
_request_children: dict[tuple[str, str], tuple[Any, dict[int, Any]]] = {}


def request_observed(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
    """One answered request: its time, its status and, for 4xx/5xx, its error code.

    MetricsMiddleware calls this for every request.
    """
    method = request.method if request.method in _METHODS else "other"
    key = (method, _route(request))
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (REQUEST_SECONDS.labels(*key), {})
    histogram, by_status = children
    histogram.observe(seconds)
    status = response.status_code
    counter = by_status.get(status)
    if counter is None:
        counter = by_status[status] = RESPONSES.labels(*key, str(status))
    counter.inc()
    if status >= 400:
        ERRORS.labels(_error_code(response), str(status)).inc()


class MetricsMiddleware:
    """Per request: one histogram observation and one counter increment (plus one for errors).

    Near the top of MIDDLEWARE, so the time covers every other middleware and static files too.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        request_observed(request, response, time.perf_counter() - started)
        return response


# --- the scrape ---------------------------------------------------------------------------


DatabaseReader = Callable[[], Iterable[GaugeMetricFamily]]
_database_readers: list[DatabaseReader] = []


def database_reader_register(reader: DatabaseReader) -> None:
    """Add gauges read from the database at scrape time (apps above register theirs when
    Django starts: ``modelops.apps``); registering the same reader twice adds it once."""
    if reader not in _database_readers:
        _database_readers.append(reader)


class DatabaseCollector:
    """Gauges the registered readers take from the database at scrape time; a database outage
    is a gauge, not a 500."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "floodsite_database_up",
            "1 when the database answered this scrape; 0 when it is unavailable, and then the "
            "alert, drift and model families are missing from the scrape.",
        )
        try:
            families = [family for reader in _database_readers for family in reader()]
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


@lru_cache(maxsize=8)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def _address_allowed(request: HttpRequest) -> bool:
    # Imported here, like error_body below: this module loads before Django's apps.
    from floodsite.rest import client_ip

    # With no trusted proxy declared, a relayed request shows the proxy's address (often
    # 127.0.0.1), not the caller's: such requests need the token. Behind TRUSTED_PROXY_COUNT
    # proxies the caller's address is the one they forwarded.
    if not settings.TRUSTED_PROXY_COUNT and any(header in request.META for header in _FORWARDED):
        return False
    try:
        address = ipaddress.ip_address(client_ip(request) or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(settings.METRICS_ALLOWED_IPS)))


def scrape_allowed(request: HttpRequest) -> bool:
    """The right bearer token, or no Authorization header and an address METRICS_ALLOWED_IPS
    allows. A token that is wrong is refused from every address."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, given = header.partition(" ")
        token = settings.METRICS_TOKEN
        return (
            bool(token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), token.encode())
        )
    return _address_allowed(request)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape: every process's counts plus the database's gauges."""
    if not scrape_allowed(request):
        # Imported here: gunicorn's master and Celery's main process import this module
        # before Django's apps are loaded, and the error contract needs them.
        from floodsite.exceptions import error_body

        return JsonResponse(
            error_body(
                request,
                code="permission_denied",
                message="Metrics need the bearer token METRICS_TOKEN, or a direct request "
                "from an address in METRICS_ALLOWED_IPS.",
                fields={"Authorization": "Bearer <METRICS_TOKEN>"},
            ),
            status=403,
        )
    registry = CollectorRegistry(auto_describe=False)
    folder = metrics_dir()
    folder.mkdir(parents=True, exist_ok=True)
    multiprocess.MultiProcessCollector(registry, path=str(folder))
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
