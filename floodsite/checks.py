"""System checks of the project: a local run that was never set up."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.checks import CheckMessage, register

from floodsite.local_state import HOW_TO_FIX, secret_key_missing


@register()
def secret_key_check(**kwargs: Any) -> list[CheckMessage]:
    """A warning, not an error: migrate and makemigrations need no key, and a fresh clone runs
    them; `runserver` shows it, and gunicorn, Celery and invite_user refuse to start."""
    if not secret_key_missing():
        return []
    return [
        checks.Warning(
            "There is no secret key: sign-in, sessions and links will not work.",
            hint=HOW_TO_FIX[0].upper() + HOW_TO_FIX[1:] + ".",
            id="floodsite.W001",
        )
    ]
