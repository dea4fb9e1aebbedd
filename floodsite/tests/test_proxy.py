"""The shipped deployment under slow clients: Debian's nginx with deploy/nginx/ in front of
gunicorn with gunicorn.conf.py, both real processes on loopback ports.

Each gunicorn thread serves one connection from its first byte, so clients that trickle their
headers hold every thread; nginx reads each request whole before gunicorn sees it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings

from accounts.tests.factories import UserFactory, token_for
from floodsite.tests.servers import free_port, gunicorn_command
from predictions.models import Prediction
from predictions.tests.test_tasks import worker_env

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"
PREDICTIONS = "/api/v1/predictions/"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("Debian's nginx is needed: `make test` installs it (apt-get install nginx)")
    return found


def render_nginx_conf(prefix: Path, *, listen: str, upstream: str, static_root: Path) -> Path:
    """The shipped template with its three placeholders filled, as envsubst fills them."""
    text = TEMPLATE.read_text()
    for name, value in {
        "FLOODSITE_LISTEN": listen,
        "FLOODSITE_UPSTREAM": upstream,
        "FLOODSITE_STATIC_ROOT": str(static_root),
    }.items():
        text = text.replace(f"${{{name}}}", value)
    assert "${" not in text, "a placeholder the test does not know"
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def start_nginx(prefix: Path, conf: Path) -> subprocess.Popen:
    # Its own pid file, logs and temporary files under the prefix; in the foreground. As root,
    # its workers would otherwise run as nobody, who cannot read the test's folders.
    directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    command = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
    checked = subprocess.run([*command, "-t", "-g", directives], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    log = open(prefix / "nginx.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([*command, "-g", directives], stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def request(
    port: int, method: str, path: str, *, body: dict | None = None, headers: dict | None = None
) -> tuple[int, bytes, dict[str, str], float]:
    """One request on a new connection: status, body, headers and seconds it took."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        content = response.read()
        return response.status, content, dict(response.getheaders()), time.monotonic() - started
    finally:
        connection.close()


def wait_until_up(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(port, "GET", "/healthz")[0] == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no answer on port {port}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


class SlowClients:
    """``count`` connections that each send a request line, then one more header line every
    ``interval`` seconds, and never finish; one the server closes is opened again at once."""

    def __init__(self, port: int, *, count: int, interval: float):
        self.port, self.count, self.interval = port, count, interval
        self.cut = 0  # connections the server closed
        self._sockets: dict[socket.socket, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        self._sockets[sock] = time.monotonic() + self.interval

    def _close(self, sock: socket.socket) -> None:
        del self._sockets[sock]
        sock.close()
        self.cut += 1

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def _run(self) -> None:
        line = 0
        while not self._stop.wait(0.2):
            # A readable socket here is one the server answered or closed: gone either way.
            readable, _, _ = select.select(list(self._sockets), [], [], 0)
            for sock in readable:
                self._close(sock)
            now = time.monotonic()
            for sock, due in list(self._sockets.items()):
                if now < due:
                    continue
                line += 1
                try:
                    sock.sendall(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                    self._sockets[sock] = now + self.interval
                except OSError:
                    self._close(sock)
            while len(self._sockets) < self.count and not self._stop.is_set():
                with contextlib.suppress(OSError):
                    self._open()


def answers_under_attack(
    port: int, token: str, inputs: dict, *, seconds: float
) -> list[tuple[str, int, float]]:
    """While 50 slow clients hold their connections to ``port``, a health check and a real
    prediction about once a second: (what, status, seconds) for each."""
    answers = []
    with SlowClients(port, count=50, interval=3) as attack:
        time.sleep(1)  # every slow connection accepted and sending
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for what, method, path, body in (
                ("healthz", "GET", "/healthz", None),
                ("prediction", "POST", PREDICTIONS, {"inputs": inputs}),
            ):
                try:
                    status, _, _, took = request(
                        port, method, path, body=body, headers={"Authorization": f"Token {token}"}
                    )
                except (OSError, http.client.HTTPException):
                    status, took = 0, 10.0  # no answer within the client's 10 s
                answers.append((what, status, took))
            time.sleep(0.5)
    answers.append(("slow connections the server closed", attack.cut, 0.0))
    return answers


@pytest.fixture
def gunicorn(transactional_db, production_model, tmp_path):
    """gunicorn with the shipped config on a loopback port, told it sits behind one proxy."""
    port = free_port()
    static_root = tmp_path / "static"
    env = {
        **worker_env(settings.MEDIA_ROOT),
        "DJANGO_STATIC_ROOT": str(static_root),
        "TRUSTED_PROXY_COUNT": "1",
    }
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stderr
    log = tmp_path / "gunicorn.log"
    with open(log, "ab") as handle:
        server = subprocess.Popen(
            gunicorn_command(port, workers=2),
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(port, server, log)
        yield port, static_root, log
    finally:
        stop(server)


@pytest.mark.slow
def test_behind_nginx_slow_clients_do_not_hold_up_anyone(gunicorn, typical_inputs, tmp_path):
    gunicorn_port, static_root, gunicorn_log = gunicorn
    token = token_for(UserFactory(username="prober"))
    auth = {"Authorization": f"Token {token}"}
    # Each worker loads the model on its first prediction; new connections reach both workers.
    for _ in range(20):
        status, body, _, _ = request(
            gunicorn_port, "POST", PREDICTIONS, body={"inputs": typical_inputs}, headers=auth
        )
        assert status == 201, body[:500]

    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = render_nginx_conf(
        prefix,
        listen=f"127.0.0.1:{port}",
        upstream=f"127.0.0.1:{gunicorn_port}",
        static_root=static_root,
    )
    nginx = start_nginx(prefix, conf)
    try:
        wait_until_up(port, nginx, prefix / "nginx.log")
        answers = answers_under_attack(port, token, typical_inputs, seconds=30)

        # Static files come from the collected folder, straight from nginx: a file Django's
        # process has never heard of is there too.
        (static_root / "css" / "probe.0123456789ab.css").write_text("body{}")
        collected_css = request(port, "GET", "/static/css/site.css")
        fingerprinted = request(port, "GET", "/static/css/probe.0123456789ab.css")

        # The forged address in front of the one nginx appends is not the audit row's.
        forged = request(
            port,
            "POST",
            PREDICTIONS,
            body={"inputs": typical_inputs},
            headers={**auth, "X-Forwarded-For": "203.0.113.5"},
        )
    finally:
        stop(nginx)
    logs = f"{gunicorn_log.read_text()[-2000:]}\n{(prefix / 'nginx.log').read_text()[-2000:]}"

    *probes, (_, cut, _) = answers
    assert len(probes) >= 40, probes
    assert all(status in (200, 201) for _, status, _ in probes), (probes, logs)
    slowest = max(took for _, _, took in probes)
    assert slowest < 1.0, (sorted(probes, key=lambda probe: -probe[2])[:5], logs)
    # nginx closed every slow connection at its client_header_timeout (10 s), more than once.
    assert cut >= 50, cut

    status, content, headers, _ = collected_css
    assert status == 200
    assert content == (ROOT / "static" / "css" / "site.css").read_bytes()
    assert headers["Cache-Control"] == "public, max-age=3600"
    status, content, headers, _ = fingerprinted
    assert (status, content) == (200, b"body{}")
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"

    status, content, _, _ = forged
    assert status == 201, content[:500]
    assert Prediction.objects.get(pk=json.loads(content)["id"]).client_ip == "127.0.0.1"
