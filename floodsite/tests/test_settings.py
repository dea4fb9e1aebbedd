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


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_setting_django_up_writes_no_file(tmp_path):
    """Importing the settings (and the apps, URLs and metrics) makes no folder and no key."""
    probe = "import django; django.setup(); import floodsite.urls, floodsite.celery"
    for env in ({}, {"DJANGO_DEBUG": "on"}, {"REDIS_URL": "redis://127.0.0.1:6379/3"}):
        result = run_python(probe, env, tmp_path)
        assert result.returncode == 0, result.stderr
        assert files_under(tmp_path) == []


def test_the_local_state_is_made_once_and_kept(tmp_path):
    """What setup_site and run_site call first: the folders and a key, reused afterwards."""
    prepare = (
        "import django; django.setup(); from floodsite.local_state import local_state_prepare;"
        "print('\\n'.join(local_state_prepare()))"
    )
    first = run_python(prepare, {}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Generated a secret key" in first.stdout
    var = tmp_path / "var"
    for folder in ("broker/queue", "broker/processed", "broker/control", "celery-results"):
        assert (var / folder).is_dir(), folder
    for folder in ("media", "metrics", "static"):
        assert (var / folder).is_dir(), folder
    key_file = var / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 50
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = run_python(prepare, {}, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ""
    assert key_file.read_text() == key
    settings_key = "from django.conf import settings; print(settings.SECRET_KEY)"
    assert run_python(settings_key, {}, tmp_path).stdout.strip() == key


@pytest.mark.slow
def test_setup_site_makes_the_key_and_folders_of_a_fresh_clone(tmp_path):
    result = run_manage(["setup_site", "--rows", "2000"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Generated a secret key" in result.stdout
    assert "Created administrator" in result.stdout
    var = tmp_path / "var"
    assert len((var / "secret_key").read_text()) >= 50
    assert (var / "broker" / "queue").is_dir()
    assert (var / "floodsite.sqlite3").is_file()


def test_a_command_that_needs_the_key_says_how_to_make_one(tmp_path):
    result = run_manage(["invite_user", "ana", "ana@example.org"], {}, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("floodsite: configuration error: DJANGO_SECRET_KEY is not set")
    assert "python manage.py setup_site" in error
    assert not (tmp_path / "var" / "secret_key").exists()


def test_the_server_and_worker_without_a_key_stop_saying_how_to_make_one(tmp_path):
    bin_dir = Path(sys.executable).parent
    gunicorn = [str(bin_dir / "gunicorn"), "--config", "gunicorn.conf.py"]
    commands = [
        [*gunicorn, "--bind", "127.0.0.1:0", "floodsite.wsgi"],
        [str(bin_dir / "celery"), "-A", "floodsite", "worker", "--concurrency", "1"],
        [str(bin_dir / "celery"), "-A", "floodsite", "beat", "-s", str(tmp_path / "schedule")],
    ]
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "FLOODSITE_VAR_DIR": str(tmp_path / "var"),
    }
    for command in commands:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, (command, output)
        assert "Traceback" not in output, output
        assert "DJANGO_SECRET_KEY is not set" in output, output
        assert "python manage.py setup_site" in output


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
