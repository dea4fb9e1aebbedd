"""Settings read from the environment: the embedded default, PostgreSQL+Redis, production."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'],"
    " 'db_name': str(settings.DATABASES['default']['NAME']),"
    " 'cache': settings.CACHES['default']['BACKEND'], 'broker': settings.CELERY_BROKER_URL,"
    " 'debug': settings.DEBUG, 'env': settings.DJANGO_ENV,"
    " 'secure': settings.SESSION_COOKIE_SECURE,"
    " 'log_format': settings.LOG_FORMAT}))"
)
GOOD_SECRET = "s" + "x7Q2pL9vR4tZ8mW1nB6cY3kD5hF0jG" * 3


def run_python(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "floodsite.settings"}
    base["FLOODSITE_VAR_DIR"] = str(tmp_path / "var")
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    code = "import sys; from django.core.management import execute_from_command_line;"
    code += f"execute_from_command_line(['manage.py', *{args!r}])"
    return run_python(code, env, tmp_path)


def test_no_environment_gives_the_embedded_default(tmp_path):
    result = run_python(PROBE, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["db"] == "django.db.backends.sqlite3"
    assert seen["db_name"].startswith(str(tmp_path / "var"))
    assert seen["cache"].endswith("LocMemCache")
    assert seen["broker"] == "filesystem://"
    assert seen["debug"] is False
    assert seen["env"] == "local"
    assert seen["log_format"] == "console"
    # The local secret key is generated once and reused, never written in the source.
    key_file = tmp_path / "var" / "secret_key"
    first = key_file.read_text()
    assert len(first) >= 50
    run_python(PROBE, {}, tmp_path)
    assert key_file.read_text() == first


def test_database_and_redis_urls_switch_to_postgresql_and_redis(tmp_path):
    env = {
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/floodsite",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
    }
    seen = json.loads(run_python(PROBE, env, tmp_path).stdout)
    assert seen["db"] == "django.db.backends.postgresql"
    assert seen["cache"].endswith("RedisCache")
    assert seen["broker"] == "redis://127.0.0.1:6379/3"


def test_debug_is_only_on_when_asked(tmp_path):
    assert json.loads(run_python(PROBE, {"DJANGO_DEBUG": "on"}, tmp_path).stdout)["debug"] is True


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DJANGO_ENV": "production"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": GOOD_SECRET}, "DJANGO_ALLOWED_HOSTS"),
        (
            {"DJANGO_SECRET_KEY": GOOD_SECRET, "DJANGO_ALLOWED_HOSTS": "flood.example.org"},
            "DATABASE_URL",
        ),
        (
            {
                "DJANGO_SECRET_KEY": GOOD_SECRET,
                "DJANGO_ALLOWED_HOSTS": "flood.example.org",
                "DATABASE_URL": "not a url at all",
            },
            "DATABASE_URL",
        ),
        ({"DATABASE_URL": "mongodb://somewhere/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://postgres@127.0.0.1:5432"}, "DATABASE_URL"),
        ({"DJANGO_DEBUG": "perhaps"}, "DJANGO_DEBUG"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV"),
        ({"API_TOKEN_CACHE_SECONDS": "-1"}, "API_TOKEN_CACHE_SECONDS"),
        ({"DATABASE_PREPARED_STATEMENTS": "sometimes"}, "DATABASE_PREPARED_STATEMENTS"),
    ],
)
def test_bad_configuration_refuses_to_start_with_one_line(tmp_path, env, variable):
    result = run_manage(["check"], env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("floodsite: configuration error: " + variable)
    assert "Traceback" not in result.stderr


def test_a_bad_gunicorn_switch_stops_the_server_naming_it(tmp_path):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            *("--config", "gunicorn.conf.py", "--check-config", "floodsite.wsgi"),
        ],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "GUNICORN_REUSE_PORT": "sometimes"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    output = (result.stdout + result.stderr).strip()
    assert "floodsite: configuration error: GUNICORN_REUSE_PORT must be on or off" in output
    assert "Traceback" not in output


def test_production_settings_pass_the_deploy_check(tmp_path):
    env = {
        "DJANGO_SECRET_KEY": GOOD_SECRET,
        "DJANGO_ALLOWED_HOSTS": "flood.example.org",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    }
    seen = json.loads(run_python(PROBE, env, tmp_path).stdout)
    assert seen["env"] == "production"
    assert seen["secure"] is True
    assert seen["log_format"] == "json"
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout
