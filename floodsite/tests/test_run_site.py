"""`make run` (manage.py run_site) next to a server that already holds its port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from floodsite.tests.servers import free_port, gunicorn_command, local_var

ROOT = Path(__file__).resolve().parents[2]


def _env(var: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "floodsite.settings",
        "FLOODSITE_VAR_DIR": str(var),
    }


def _healthz(port: int) -> int:
    url = f"http://127.0.0.1:{port}/healthz"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


@pytest.mark.slow
def test_a_second_site_on_a_busy_port_fails_instead_of_sharing_it(tmp_path):
    """Production gunicorn gives each worker its own SO_REUSEPORT socket, so a second server of
    the same user could join a port silently; `make run` keeps one shared socket and fails."""
    port = free_port()
    first = subprocess.Popen(
        gunicorn_command(port, workers=1),
        cwd=ROOT,
        env=_env(local_var(tmp_path / "first")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _healthz(port) == 200
                break
            except OSError:
                if time.monotonic() > deadline or first.poll() is not None:
                    raise
                time.sleep(0.3)

        # Its own process group: if it wrongly keeps running, its gunicorn and Celery go too.
        second = subprocess.Popen(
            [sys.executable, "manage.py", "run_site", "--port", str(port)],
            cwd=ROOT,
            env=_env(tmp_path / "second"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, errors = second.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGTERM)
            second.communicate(timeout=30)
            pytest.fail("the second site kept running on a port another server holds")

        assert second.returncode == 1, errors
        assert "Address already in use" in errors, errors
        assert "A process stopped unexpectedly" in errors
        # The server that held the port is untouched.
        assert _healthz(port) == 200
    finally:
        first.terminate()
        first.wait(timeout=20)
