"""Reading settings from the environment: typed values, on/off flags and one-line refusals.

``floodsite/settings.py`` declares each setting with these; nothing here touches the disk
except reading the optional ``.env`` file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import environ

T = TypeVar("T")

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def dotenv_load(path: Path) -> None:
    """Read ``path`` (KEY=value lines) into the environment when it exists; set values win."""
    if path.is_file():
        env.read_env(str(path))


def refuse(variable: str, reason: str) -> NoReturn:
    """Stop the process with one line naming the variable, instead of a traceback."""
    sys.stderr.write(f"floodsite: configuration error: {variable} {reason}\n")
    raise SystemExit(2)


def read(reader: Callable[..., T], name: str, **kwargs: object) -> T:
    """Read one variable; a malformed value stops the process with one line naming it."""
    try:
        return reader(name, **kwargs)
    except (ValueError, environ.ImproperlyConfigured) as exc:
        refuse(name, f"is malformed: {exc}")


def flag(name: str, *, default: bool) -> bool:
    """A yes/no setting; anything but the usual spellings is refused rather than read as off."""
    raw = env.str(name, default="true" if default else "false").strip().lower()
    if raw in _TRUE:
        return True
    if raw not in _FALSE:
        refuse(name, f"must be on/off, true/false, yes/no or 1/0, not {raw!r}")
    return False
