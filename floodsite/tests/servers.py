"""Helpers for tests that start real servers (gunicorn with the shipped config) on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path


def local_var(path: Path) -> Path:
    """A fresh local state folder holding a secret key, which gunicorn refuses to start
    without (`manage.py setup_site` makes it, with the other folders, outside tests)."""
    from floodsite.local_state import secret_key_write

    secret_key_write(path / "secret_key")
    return path


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(port: int, *, workers: int) -> list[str]:
    """gunicorn with gunicorn.conf.py (run from the repository root) on 127.0.0.1:port."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "floodsite.wsgi",
    ]


def worker_open_files(master: int) -> dict[int, list[str]]:
    """What each worker of the gunicorn ``master`` holds open, as /proc shows it (a path, or
    ``socket:[inode]``), by worker pid."""
    held = {}
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        targets = []
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # an fd closed meanwhile
                targets.append(os.readlink(fd))
        held[int(pid)] = targets
    return held
