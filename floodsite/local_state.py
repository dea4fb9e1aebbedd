"""The local state under FLOODSITE_VAR_DIR: its folders and the generated secret key.

Importing the settings writes nothing. ``manage.py setup_site`` and ``manage.py run_site`` (so
``make run``) make what is missing with ``local_state_prepare``; gunicorn, the Celery worker and
beat, and commands that sign anything call a ``*_require`` function first, which stops with one
line saying what to run instead of failing later with a traceback.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.exceptions import ImproperlyConfigured

from floodsite.settings_env import refuse

HOW_TO_FIX = "run `python manage.py setup_site` (or `make run`) first, or set DJANGO_SECRET_KEY"


def secret_key_missing() -> bool:
    """True when neither DJANGO_SECRET_KEY nor the local key file gave a key."""
    try:
        return not settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        return True


def secret_key_write(path: Path) -> str:
    """Write a new random key to ``path``, readable by its owner only, and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    path.chmod(0o600)
    return key


def local_folders() -> list[Path]:
    """Every folder the configured settings expect to exist before a process uses it."""
    folders = [Path(settings.VAR_DIR), Path(settings.MEDIA_ROOT), Path(settings.METRICS_DIR)]
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        folders.append(Path(str(database["NAME"])).parent)
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            folders.append(Path(str(options[key])))
    if settings.CELERY_RESULT_BACKEND.startswith("file://"):
        folders.append(Path(settings.CELERY_RESULT_BACKEND.removeprefix("file://")))
    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        # Locally assets are served from the installed packages, but whitenoise warns when
        # STATIC_ROOT is missing; with hashed files collectstatic makes it (setup_site).
        folders.append(Path(settings.STATIC_ROOT))
    return list(dict.fromkeys(folders))


def local_state_prepare() -> list[str]:
    """Make the missing folders and, locally, the secret key file; safe to run again.

    Returns one line per thing made. The key is also set on this process's settings, so a
    command that prepared the state can go on to use it.
    """
    made = []
    for folder in local_folders():
        if folder.is_dir():
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            refuse(_variable_for(folder), f"cannot be created: {exc}")
        made.append(f"Created folder {folder}.")
    if not os.access(settings.METRICS_DIR, os.W_OK):
        refuse("METRICS_DIR", f"is not writable: {settings.METRICS_DIR}")
    if secret_key_missing():
        settings.SECRET_KEY = secret_key_write(Path(settings.SECRET_KEY_FILE))
        made.append(f"Generated a secret key into {settings.SECRET_KEY_FILE}.")
    return made


def secret_key_require() -> None:
    """Stop with one line when there is no secret key (sessions and links need one)."""
    if secret_key_missing():
        refuse(
            "DJANGO_SECRET_KEY",
            f"is not set and {settings.SECRET_KEY_FILE} does not exist: {HOW_TO_FIX}",
        )


def local_state_require() -> None:
    """Stop with one line when the secret key or a broker or result folder is missing (media
    and metrics folders are made when first written to)."""
    secret_key_require()
    made_on_demand = {Path(settings.MEDIA_ROOT), Path(settings.METRICS_DIR)}
    made_on_demand.add(Path(settings.STATIC_ROOT))
    for folder in local_folders():
        if folder not in made_on_demand and not folder.is_dir():
            refuse(_variable_for(folder), f"names {folder}, which does not exist: {HOW_TO_FIX}")


def _variable_for(folder: Path) -> str:
    """The environment variable to blame for a folder (the folder's own, else the var dir)."""
    if folder == Path(settings.METRICS_DIR):
        return "METRICS_DIR"
    if folder == Path(settings.MEDIA_ROOT):
        return "DJANGO_MEDIA_ROOT"
    if folder == Path(settings.STATIC_ROOT):
        return "DJANGO_STATIC_ROOT"
    return "FLOODSITE_VAR_DIR"
