"""In-process cost of one plain token prediction: the view in the middleware chain, the bare
fast path, and the DRF view, through Django's WSGI handler (no server, no network).

Run by bench/run.py in a subprocess of its own (``python bench/hotpath.py``), against a
throwaway SQLite database in a temporary var directory: the audit INSERT is the same in every
variant, so the differences are what the middleware chain and DRF cost on this path.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUESTS_PER_ROUND = 1_000
ROUNDS = 7


def _measure() -> dict[str, list[float]]:
    """In the subprocess: set up a site, then time each variant in alternating rounds."""
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
    from django.core.management import call_command

    # The var folders, secret key and database, and the default model on 20,000 rows.
    call_command("setup_site", skip_collectstatic=True, rows=20_000, stdout=io.StringIO())
    import logging

    from accounts.models import User
    from accounts.services import api_token_create
    from mlcore.engine import synthetic
    from predictions.api import fastpath

    user = User.objects.create_user("bench-hotpath", is_superuser=True)
    _, token = api_token_create(user=user, name="bench", expires_in_days=1)
    frame = synthetic.generate(300, seed=3)[synthetic.FEATURE_NAMES]
    bodies = [
        json.dumps({"inputs": {k: float(v) for k, v in row.items()}}).encode()
        for _, row in frame.iterrows()
    ]
    logging.disable(logging.CRITICAL)  # the request log line would be I/O, not the path's cost
    app = WSGIHandler()

    def environ(body: bytes, query: str = "") -> dict:
        return {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/predictions/",
            "QUERY_STRING": query,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "HTTP_HOST": "localhost",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Token {token}",
        }

    def through_site(body: bytes, query: str = "") -> None:
        status: list[str] = []

        def start_response(
            line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            status.append(line)
            return lambda data: None

        b"".join(app(environ(body, query), start_response))
        if not status[0].startswith("201"):
            raise RuntimeError(f"expected 201, got {status[0]}")

    def bare(body: bytes) -> None:
        response = fastpath.handle(WSGIRequest(environ(body)))
        if response is None or response.status_code != 201:
            raise RuntimeError("the fast path declined a plain prediction")

    variants = {
        "view in the middleware chain": through_site,
        "fast path alone (handle, no middleware)": bare,
        # A query string sends the request to the DRF view; explain=0 asks for nothing more.
        "DRF view (?explain=0)": lambda body: through_site(body, "explain=0"),
    }
    for run in variants.values():  # warm up: caches, prepared statements, model loaded
        for body in bodies:
            run(body)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, run in variants.items():
            started = time.perf_counter()
            for index in range(REQUESTS_PER_ROUND):
                run(bodies[index % len(bodies)])
            elapsed = time.perf_counter() - started
            times[name].append(elapsed * 1000 / REQUESTS_PER_ROUND)
    return times


def subprocess_env(**settings: str) -> dict[str, str]:
    """This process's environment without Django's settings, plus ``settings``: a measuring
    subprocess gets only its own (the api section leaves its server's variables behind)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DJANGO_") and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(DJANGO_SETTINGS_MODULE="floodsite.settings", OMP_NUM_THREADS="1", **settings)
    return env


def bench_hotpath() -> str:
    """The markdown section: median ms per request of each variant and what the chain costs."""
    with tempfile.TemporaryDirectory(prefix="floodsite-hotpath-") as var:
        env = subprocess_env(
            DJANGO_DEBUG="0", FLOODSITE_VAR_DIR=var, THROTTLE_PREDICT="1000000/min"
        )
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), "--measure"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    times = json.loads(done.stdout.strip().splitlines()[-1])
    median = {name: statistics.median(values) for name, values in times.items()}
    chain, alone, drf = median.values()
    rows = [
        f"| {name} | {median[name]:.3f} | {min(values):.3f} | {max(values):.3f} |"
        for name, values in times.items()
    ]
    return "\n".join(
        [
            "## The prediction hot path in-process (WSGI handler, no server)",
            "",
            f"`POST /api/v1/predictions/` with a token and one `inputs` object, called "
            f"{REQUESTS_PER_ROUND:,} times per round through `django.core.handlers.wsgi."
            f"WSGIHandler` in one process, {ROUNDS} rounds with the variants taking turns; "
            "SQLite in a temporary directory (the same audit INSERT in every variant), default "
            "settings with DEBUG off, the throttle raised out of the way, logging off. Model: the "
            "default synthetic model trained on 20,000 rows.",
            "",
            "| variant | median ms/request | fastest round | slowest round |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Running the fast path as a view inside the ordinary middleware chain (which made "
            f"the Host and User-Agent checks, request id, log line, metrics and security headers "
            f"the site's own on this path) costs **{chain - alone:.3f} ms** per request over "
            f"the bare path; the DRF view costs {drf - chain:.3f} ms more than the view.",
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(_measure()))
    else:
        print(bench_hotpath())
