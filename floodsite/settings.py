"""Every floodsite setting, read from the environment with safe defaults.

Two modes, chosen by DJANGO_ENV:

* ``local`` (the default when no DJANGO_SECRET_KEY is set): SQLite under ``var/``, a
  filesystem Celery broker (no server), local-memory cache, readable logs. ``manage.py setup_site``
  (or ``run_site``) generates a secret key once into ``var/secret_key``, so sessions survive
  restarts, and makes the folders under ``var/``.
* ``production`` (the default as soon as DJANGO_SECRET_KEY is set): the secret key, allowed
  hosts and DATABASE_URL are required; HTTPS-only cookies, HSTS and JSON logs are on.

DEBUG is off in both unless DJANGO_DEBUG asks for it. The README and ``.env.example`` document
each variable read here. Importing this module writes nothing: the parsing helpers are in
``floodsite/settings_env.py`` and the local folders and key are made by
``floodsite/local_state.py``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from floodsite.settings_env import dotenv_load, env, flag, read, refuse

BASE_DIR = Path(__file__).resolve().parent.parent
dotenv_load(BASE_DIR / ".env")

VAR_DIR = Path(read(env.str, "FLOODSITE_VAR_DIR", default=str(BASE_DIR / "var")))

_secret_from_env = env.str("DJANGO_SECRET_KEY", default="")
DJANGO_ENV = read(env.str, "DJANGO_ENV", default="production" if _secret_from_env else "local")
if DJANGO_ENV not in {"local", "production"}:
    refuse("DJANGO_ENV", f"must be 'local' or 'production', not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

DEBUG = flag("DJANGO_DEBUG", default=False)

# A local run keeps a random key in this file, made by `manage.py setup_site` (or run_site),
# never a key written in the source; without it SECRET_KEY stays empty and the server, the
# worker and the commands that sign anything stop saying how to make one
# (floodsite/local_state.py).
SECRET_KEY_FILE = VAR_DIR / "secret_key"
if PRODUCTION:
    if not _secret_from_env:
        refuse("DJANGO_SECRET_KEY", "is required when DJANGO_ENV=production")
    if len(_secret_from_env) < 50 or len(set(_secret_from_env)) < 5:
        refuse("DJANGO_SECRET_KEY", "must be at least 50 random characters")
    SECRET_KEY = _secret_from_env
elif _secret_from_env:
    SECRET_KEY = _secret_from_env
else:
    SECRET_KEY = SECRET_KEY_FILE.read_text().strip() if SECRET_KEY_FILE.is_file() else ""

ALLOWED_HOSTS = read(
    env.list, "DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    refuse("DJANGO_ALLOWED_HOSTS", "is required when DJANGO_ENV=production")
CSRF_TRUSTED_ORIGINS = read(env.list, "DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- applications -------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "csp",
    "axes",
    "floodsite",
    "accounts",
    "mlcore",
    "predictions",
    "modelops",
]

MIDDLEWARE = [
    # Near the top, so the request time it records covers the middleware below it.
    "floodsite.metrics.MetricsMiddleware",
    "floodsite.middleware.RequestIDMiddleware",
    "floodsite.exceptions.ApplicationErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "floodsite.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "floodsite.urls"
WSGI_APPLICATION = "floodsite.wsgi.application"
ASGI_APPLICATION = "floodsite.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
                "predictions.context_processors.batch_notices",
                "modelops.context_processors.monitoring_alerts",
            ],
        },
    },
]

# --- data stores --------------------------------------------------------------------------

_database_url = env.str("DATABASE_URL", default="")
if PRODUCTION and not _database_url:
    refuse("DATABASE_URL", "is required when DJANGO_ENV=production")
if _database_url:
    _scheme, _, _rest = _database_url.partition("://")
    if _scheme not in {"postgres", "postgresql", "pgsql", "sqlite"} or not _rest:
        refuse("DATABASE_URL", "must look like postgres://user@host:5432/name or sqlite:///path")
    if _scheme != "sqlite" and not urlsplit(_database_url).path.strip("/"):
        refuse("DATABASE_URL", "names no database (postgres://user@host:5432/name)")
DATABASES = {
    "default": read(
        env.db_url, "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'floodsite.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = read(env.int, "DATABASE_CONN_MAX_AGE", default=60)
# Off by default (Django's default): a health check is one more round trip on every request.
# Without it, the first request on a connection the database dropped (a restart) is a 503
# and the connection is replaced for the next one.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = flag("DATABASE_CONN_HEALTH_CHECKS", default=False)
# Covering columns (Index(include=...)) are a PostgreSQL speed-up; SQLite builds the same index
# without them, which Django reports as models.W040 on every migrate of the local default.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
# The audit INSERT of every prediction runs as a prepared statement on PostgreSQL (floodsite/
# db.py). Turn off behind a pooler that cannot keep them (PgBouncer in transaction mode
# before 1.21).
DATABASE_PREPARED_STATEMENTS = flag("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A stopped database answers readiness checks and pages within seconds, not minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    if DATABASE_PREPARED_STATEMENTS:
        # Django connects with psycopg's prepare_threshold=None, which makes psycopg ignore
        # execute(prepare=True). Django's own cursors bind on the client and never prepare
        # whatever this says, so only the audit INSERT of predictions/audit_writer.py is affected.
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that worker processes started by tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    # WAL lets the web server and the worker share the file without "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )

REDIS_URL = read(env.str, "REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": read(env.str, "CACHE_KEY_PREFIX", default="floodsite"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -------------------------------------------------------------------------------

CELERY_BROKER_URL = read(env.str, "CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "broker"
_FILESYSTEM_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    # kombu's filesystem transport: the embedded default needs no broker server. Every folder
    # it writes is under var/; its exchange tables ("control") would otherwise land in
    # whatever directory the process was started from.
    {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
    if _FILESYSTEM_BROKER
    # A task a killed worker never acknowledged is handed to another worker after this long;
    # batch chunk tasks take seconds, so minutes are plenty.
    else {"visibility_timeout": read(env.int, "CELERY_VISIBILITY_TIMEOUT", default=300)}
)
CELERY_RESULT_BACKEND = read(
    env.str, "CELERY_RESULT_BACKEND", default=REDIS_URL or f"file://{VAR_DIR / 'celery-results'}"
)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A pool process whose resident memory passed this many KiB is replaced after its task, so one
# hostile or huge job cannot leave a worker holding gigabytes; 0 never replaces one.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = (
    read(env.int, "CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=1_000_000) or None
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
CELERY_BEAT_SCHEDULE = {
    "resume-stalled-batches": {
        "task": "predictions.tasks.batch_resume_stalled_task",
        "schedule": read(env.float, "BATCH_RESUME_INTERVAL_SECONDS", default=60.0),
    },
}

# --- files --------------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(read(env.str, "DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))
# Leaflet (the site map) from django-leaflet's copy, under static/leaflet/. Its folder only:
# as an app it would load GeoDjango, which needs the GDAL library.
_LEAFLET_PACKAGE = importlib.util.find_spec("leaflet")
if _LEAFLET_PACKAGE is None or not _LEAFLET_PACKAGE.submodule_search_locations:
    raise SystemExit("floodsite: django-leaflet is missing: pip install -r requirements.txt")
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("leaflet", Path(_LEAFLET_PACKAGE.submodule_search_locations[0]) / "static" / "leaflet"),
]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(read(env.str, "DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Locally the site serves assets straight from the installed packages, so `make run` needs
# no collectstatic; production serves the collected, hashed copies.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

# --- model ----------------------------------------------------------------------------------

FLOODSITE_MODEL_NAME = read(env.str, "FLOODSITE_MODEL_NAME", default="flood-risk")
FLOODSITE_MODEL_DIR = MEDIA_ROOT / "models"
# How stale a process's view of "which version is in production" may be, in seconds.
FLOODSITE_MODEL_RECHECK_SECONDS = read(env.float, "FLOODSITE_MODEL_RECHECK_SECONDS", default=2.0)
FLOODSITE_TRAINING_MAX_BYTES = read(env.int, "FLOODSITE_TRAINING_MAX_BYTES", default=1_000_000_000)
# Promotion gate (mlcore/engine/evaluation.py): a candidate is refused, unless forced with a
# reason, when its ROC-AUC is more than GATE_MAX_AUC_DROP below production's on the same rows,
# or when it catches fewer than GATE_MIN_RECALL_HIGH of real floods in band high or above
# (the default model catches about 0.53). Recorded outcomes join the comparison once there
# are GATE_MIN_OUTCOMES of each class.
GATE_MAX_AUC_DROP = read(env.float, "GATE_MAX_AUC_DROP", default=0.02)
GATE_MIN_RECALL_HIGH = read(env.float, "GATE_MIN_RECALL_HIGH", default=0.45)
GATE_MIN_OUTCOMES = read(env.int, "GATE_MIN_OUTCOMES", default=30)

# --- monitoring -----------------------------------------------------------------------------

# Every MONITOR_INTERVAL_MINUTES a check looks back MONITOR_WINDOW_MINUTES over the audit log.
MONITOR_INTERVAL_MINUTES = read(env.int, "MONITOR_INTERVAL_MINUTES", default=5)
MONITOR_WINDOW_MINUTES = read(env.int, "MONITOR_WINDOW_MINUTES", default=60)
CELERY_BEAT_SCHEDULE["monitoring-check"] = {
    "task": "predictions.tasks.monitoring_check_task",
    "schedule": 60.0 * MONITOR_INTERVAL_MINUTES,
}
# Alert thresholds: PSI per feature, share of failed batch rows, p95 latency of web/API calls,
# and how far ROC-AUC on outcomes may fall below the training ROC-AUC.
MONITOR_PSI_THRESHOLD = read(env.float, "MONITOR_PSI_THRESHOLD", default=0.2)
MONITOR_ERROR_RATE = read(env.float, "MONITOR_ERROR_RATE", default=0.05)
MONITOR_P95_LATENCY_MS = read(env.float, "MONITOR_P95_LATENCY_MS", default=500.0)
MONITOR_ACCURACY_DROP = read(env.float, "MONITOR_ACCURACY_DROP", default=0.05)
# Ground truth lags predictions by days, so accuracy looks at a longer window than traffic.
MONITOR_ACCURACY_WINDOW_DAYS = read(env.int, "MONITOR_ACCURACY_WINDOW_DAYS", default=30)
MONITOR_MIN_OUTCOMES = read(env.int, "MONITOR_MIN_OUTCOMES", default=50)
# PSI on a handful of rows is noise; below this many rows drift is reported but not alerted.
MONITOR_DRIFT_MIN_ROWS = read(env.int, "MONITOR_DRIFT_MIN_ROWS", default=100)
# 0 turns the no-traffic alert off.
MONITOR_NO_TRAFFIC_MINUTES = read(env.int, "MONITOR_NO_TRAFFIC_MINUTES", default=60)
MONITOR_ALERT_EMAILS = read(env.list, "MONITOR_ALERT_EMAILS", default=[])
# The dashboard's charts are drawn once per this many seconds (and per new check).
MONITOR_CHART_CACHE_SECONDS = read(env.int, "MONITOR_CHART_CACHE_SECONDS", default=30)

# --- metrics --------------------------------------------------------------------------------

# Prometheus metrics at /metrics (floodsite/metrics.py). Every gunicorn and Celery process
# writes its counts to files here and a scrape adds them up, so web and workers share it.
METRICS_DIR = Path(read(env.str, "METRICS_DIR", default="") or VAR_DIR / "metrics")
# A scrape is allowed with `Authorization: Bearer <METRICS_TOKEN>` (empty: no token works) or,
# without that header, straight from an address in METRICS_ALLOWED_IPS (addresses or CIDR;
# empty: the token only).
METRICS_TOKEN = read(env.str, "METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    refuse("METRICS_TOKEN", "must be at least 16 characters (or empty for no token)")
METRICS_ALLOWED_IPS = read(env.list, "METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
for _network in METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError:
        refuse("METRICS_ALLOWED_IPS", f"holds {_network!r}, which is no address or network")
METRICS_ALLOWED_IPS = [_network.strip() for _network in METRICS_ALLOWED_IPS]

# --- auth and security --------------------------------------------------------------------

# How many reverse proxies in front of gunicorn each append the address they saw to
# X-Forwarded-For: 1 behind the shipped nginx (docker-compose, deploy/nginx/). The client is the
# Nth address from the right; 0 ignores the header, which any client can write. One value for
# the throttles, django-axes, the audit row and /metrics (floodsite/rest.py::client_ip).
TRUSTED_PROXY_COUNT = read(env.int, "TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    refuse("TRUSTED_PROXY_COUNT", f"must be 0 or more, not {TRUSTED_PROXY_COUNT}")

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in lockout (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is refused for AXES_COOLOFF_MINUTES.
AXES_FAILURE_LIMIT = read(env.int, "AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=read(env.int, "AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "floodsite.rest.client_ip"
# Password-reset requests (accounts/throttles.py), N/second|minute|hour|day: per typed e-mail
# address (whether or not an account has it) and per client address.
THROTTLE_PASSWORD_RESET_ADDRESS = read(env.str, "THROTTLE_PASSWORD_RESET_ADDRESS", default="3/hour")
THROTTLE_PASSWORD_RESET_CLIENT = read(env.str, "THROTTLE_PASSWORD_RESET_CLIENT", default="20/hour")
# Self sign-up is off: administrators invite or create users.
ALLOW_SIGNUP = flag("ALLOW_SIGNUP", default=False)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = flag("DJANGO_SECURE_COOKIES", default=PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = flag("DJANGO_SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = read(
    env.int, "DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = flag("DJANGO_SECURE_HSTS_PRELOAD", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if flag("DJANGO_BEHIND_TLS_PROXY", default=PRODUCTION):
    # The proxy terminates TLS and says so in this header; without it every request would
    # look like plain HTTP and be redirected forever.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come from the orchestrator over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# The site map's base layer: a tile URL template as Leaflet takes it
# (https://tile.example.org/{z}/{x}/{y}.png). Empty (the default): no base layer, the markers
# sit on a plain grid and the map needs no network. Its origin joins the CSP's img-src.
MAP_TILE_URL = read(env.str, "MAP_TILE_URL", default="").strip()
MAP_TILE_ATTRIBUTION = read(env.str, "MAP_TILE_ATTRIBUTION", default="").strip()
_tile_origin = ""
if MAP_TILE_URL:
    _tiles = urlsplit(MAP_TILE_URL.replace("{s}", "a"))
    if _tiles.scheme not in ("https", "http") or not _tiles.netloc:
        refuse(
            "MAP_TILE_URL", "must be an http(s) URL template such as https://host/{z}/{x}/{y}.png"
        )
    # {s} is Leaflet's subdomain placeholder: allow the host's subdomains.
    _host = _tiles.netloc.replace("a.", "*.", 1) if "{s}." in MAP_TILE_URL else _tiles.netloc
    _tile_origin = f"{_tiles.scheme}://{_host}"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", *([_tile_origin] if _tile_origin else [])],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- REST framework -----------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Signed in, plus the role permissions the view names (accounts.permissions).
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RequiredPermissions"],
    "DEFAULT_PARSER_CLASSES": ["floodsite.rest.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "floodsite.rest.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_CLASSES": ["floodsite.rest.ScopedThrottle"],
    # ScopedThrottle reads the address with client_ip; this keeps DRF's own reading the same.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    # Throttles are cost controls per user and scope, counted in the shared cache (Redis
    # when REDIS_URL is set, so every worker process sees the same counts).
    "DEFAULT_THROTTLE_RATES": {
        "predict": read(env.str, "THROTTLE_PREDICT", default="600/min"),
        "batch": read(env.str, "THROTTLE_BATCH", default="30/hour"),
        "auth": read(env.str, "THROTTLE_AUTH", default="10/min"),
        "read": read(env.str, "THROTTLE_READ", default="1200/min"),
    },
    "EXCEPTION_HANDLER": "floodsite.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
API_MAX_INSTANCES = read(env.int, "API_MAX_INSTANCES", default=1000)
# Context that passes through with a prediction (the API's "context", a batch file's extra
# columns): at most this many entries, and this many bytes of JSON per prediction.
CONTEXT_MAX_KEYS = read(env.int, "CONTEXT_MAX_KEYS", default=20)
CONTEXT_MAX_BYTES = read(env.int, "CONTEXT_MAX_BYTES", default=2048)
# Batch scoring: upload limits, rows per Celery task, and when a quiet job counts as stalled.
BATCH_MAX_BYTES = read(env.int, "BATCH_MAX_BYTES", default=300_000_000)
BATCH_MAX_ROWS = read(env.int, "BATCH_MAX_ROWS", default=2_000_000)
BATCH_CHUNK_ROWS = read(env.int, "BATCH_CHUNK_ROWS", default=20_000)
BATCH_STALLED_SECONDS = read(env.int, "BATCH_STALLED_SECONDS", default=120)
# A longer record is a row error; numbers need a few bytes, and this keeps every cell under
# the csv module's 128 KiB field limit.
BATCH_MAX_ROW_BYTES = read(env.int, "BATCH_MAX_ROW_BYTES", default=65_536)
# A chunk task reads and validates this many rows at a time; between blocks it renews its lease
# and stops if the job was cancelled. The lease must outlast the slowest block by far.
BATCH_BLOCK_ROWS = read(env.int, "BATCH_BLOCK_ROWS", default=5_000)
BATCH_CHUNK_LEASE_SECONDS = read(env.float, "BATCH_CHUNK_LEASE_SECONDS", default=60.0)
# A chunk task past the soft limit stops and fails its job with a message saying so; past the
# hard limit its process is killed (for code that cannot be interrupted).
BATCH_CHUNK_SOFT_TIME_LIMIT = read(env.float, "BATCH_CHUNK_SOFT_TIME_LIMIT", default=300.0)
BATCH_CHUNK_TIME_LIMIT = read(env.float, "BATCH_CHUNK_TIME_LIMIT", default=360.0)
# Largest request body (JSON or form) in bytes; 1,000 instances take about 0.6 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = read(env.int, "DJANGO_MAX_BODY_BYTES", default=2_621_440)
API_MAX_JSON_DEPTH = 20

KNOX_TOKEN_MODEL = "accounts.ApiToken"  # noqa: S105 (a model name)
# knox's migrations create its own token table even when the model is swapped for ApiToken;
# without them no such table (with a foreign key to users) exists at all.
MIGRATION_MODULES = {"knox": None}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=read(env.int, "API_TOKEN_TTL_DAYS", default=90)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_PREFIX": "fs_",
}
API_TOKEN_MAX_TTL_DAYS = read(env.int, "API_TOKEN_MAX_TTL_DAYS", default=365)
# How long a web process may reuse a token it has checked for `POST /api/v1/predictions/`
# without looking it up again; the audit INSERT still checks the token itself, so a revoked or
# expired token or a deactivated user is refused at once. 0 looks the token up every time.
API_TOKEN_CACHE_SECONDS = read(env.int, "API_TOKEN_CACHE_SECONDS", default=60)
if API_TOKEN_CACHE_SECONDS < 0:
    refuse("API_TOKEN_CACHE_SECONDS", "must be 0 (no reuse) or more")

SPECTACULAR_SETTINGS = {
    "TITLE": "floodsite API",
    "DESCRIPTION": (
        "Flood-risk predictions with an audit log. Authenticate with "
        "`Authorization: Token <token>`; every error has the body "
        '`{"error": {"code", "message", "fields"}, "request_id"}`. The prediction inputs '
        "follow the feature schema of the production model, shown in `PredictionInputs`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "predictions.api.schema.add_feature_schema",
        "floodsite.rest.add_error_responses",
    ],
}

# --- logging ------------------------------------------------------------------------------

LOG_LEVEL = read(env.str, "LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = read(env.str, "LOG_FORMAT", default="json" if PRODUCTION else "console")
if LOG_FORMAT not in {"json", "console"}:
    refuse("LOG_FORMAT", f"must be 'json' or 'console', not {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "floodsite.logs.build_formatter",
            "fmt": LOG_FORMAT,
        }
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "structured"},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}

# --- i18n ---------------------------------------------------------------------------------

LANGUAGE_CODE = "en-gb"
TIME_ZONE = read(env.str, "DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

EMAIL_BACKEND = read(
    env.str,
    "DJANGO_EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
# smtp://user:password@host:587/?tls=True (or smtps:// for implicit TLS); default localhost:25.
_email = read(env.email_url, "EMAIL_URL", default="smtp://localhost:25")
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = read(env.str, "DJANGO_DEFAULT_FROM_EMAIL", default="floodsite@localhost")
