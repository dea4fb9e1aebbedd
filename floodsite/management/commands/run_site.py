"""manage.py run_site: serve the site and run a Celery worker (and beat) until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from floodsite.local_state import local_state_prepare

LOOPBACK_OR_ANY = {"127.0.0.1", "0.0.0.0", "::", "::1"}  # noqa: S104 (only compared, never bound)


class Command(BaseCommand):
    help = (
        "Start gunicorn and a Celery worker with the embedded scheduler, print the URL and stop "
        "them all on Ctrl-C. Used by `make run`; deployments run each process on its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("FLOODSITE_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--worker-concurrency", type=int, default=2)

    def handle(self, *args, **opts) -> None:
        # The processes started below refuse to run without these (floodsite/local_state.py).
        for line in local_state_prepare():
            self.stdout.write(line)
        python = sys.executable
        bin_dir = os.path.dirname(python)
        web = [
            os.path.join(bin_dir, "gunicorn"),
            "--config",
            str(settings.BASE_DIR / "gunicorn.conf.py"),
            "floodsite.wsgi",
            "--bind",
            f"{opts['host']}:{opts['port']}",
            "--workers",
            str(opts["web_workers"]),
        ]
        worker = [
            os.path.join(bin_dir, "celery"),
            "-A",
            "floodsite",
            "worker",
            "--beat",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(opts["worker_concurrency"]),
            "--schedule",
            str(settings.VAR_DIR / "celerybeat-schedule"),
        ]
        # One listening socket (README: GUNICORN_REUSE_PORT): on a developer's machine a second
        # `make run` on a busy port must fail with "address already in use", not share it.
        web_env = {
            **os.environ,
            "GUNICORN_REUSE_PORT": os.environ.get("GUNICORN_REUSE_PORT", "off"),
        }
        procs = [subprocess.Popen(worker), subprocess.Popen(web, env=web_env)]
        shown_host = "localhost" if opts["host"] in LOOPBACK_OR_ANY else opts["host"]
        url = f"http://{shown_host}:{opts['port']}/"
        self.stdout.write(self.style.SUCCESS(f"\nfloodsite is running at {url}  (Ctrl-C stops)\n"))

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(p.poll() is None for p in procs):
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        failed = [p for p in procs if p.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            self.stderr.write("A process stopped unexpectedly; see its output above.")
            raise SystemExit(1)
