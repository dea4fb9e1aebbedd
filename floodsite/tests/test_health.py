"""/healthz, /readyz, request ids and the 503 page when the database is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from floodsite.tests.servers import free_port, local_var

ROOT = Path(__file__).resolve().parents[2]


def test_healthz_answers_without_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_with_a_production_model(client, production_model):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["failing"] == []
    assert set(body["components"]) == {"database", "broker", "model", "static"}
    assert str(production_model) in body["components"]["model"]["detail"]


def test_readyz_names_the_model_when_none_is_in_production(client, db):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["model"]
    assert "No production version" in body["components"]["model"]["detail"]


def test_readyz_names_a_tampered_model_artifact(client, production_model):
    path = Path(production_model.artifact.path)
    path.write_bytes(path.read_bytes() + b"tampered")
    response = client.get("/readyz")
    assert response.status_code == 503
    detail = response.json()["components"]["model"]["detail"]
    assert "SHA-256" in detail and str(production_model) in detail


def test_request_id_is_generated_and_returned(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert len(first) >= 16 and first != second


def test_a_sane_incoming_request_id_is_kept_and_an_unsafe_one_replaced(client):
    kept = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a9c21"})
    assert kept["X-Request-ID"] == "edge-7f3a9c21"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad\x1bid with spaces"})
    assert replaced["X-Request-ID"] != "bad\x1bid with spaces"
    assert replaced["X-Request-ID"].isalnum()


def test_unknown_page_is_a_404_in_the_site_style(client, user):
    client.force_login(user)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"Page not found" in response.content


def test_home_requires_sign_in_and_shows_the_production_model(client, user, production_model):
    assert client.get("/").status_code == 302
    client.force_login(user)
    page = client.get("/").content.decode()
    assert str(production_model) in page
    assert "ROC-AUC" in page


def _get(
    url: str, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, dict[str, str], str]:
    # Loopback only.
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def _post_json(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    headers = {**headers, "Content-Type": "application/json"}
    return _get(url, headers, json.dumps(body).encode())


@pytest.mark.slow
def test_database_down_gives_503_naming_it_and_json_logs_carry_the_request_id(tmp_path):
    """A real server whose database refuses connections (nothing listens on the port)."""
    port = free_port()
    dead_db = free_port()
    env = {
        "PATH": os.environ["PATH"],
        # gunicorn reads ./gunicorn.conf.py, which wants a secret key.
        "FLOODSITE_VAR_DIR": str(local_var(tmp_path / "var")),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{dead_db}/floodsite",
        "LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "floodsite.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, _ = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        assert status == 200

        status, headers, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert json.loads(body)["failing"][0] == "database"

        status, headers, body = _get(
            f"http://127.0.0.1:{port}/",
            {"X-Request-ID": "probe-12345678", "Cookie": "sessionid=signed-in-analyst"},
        )
        assert status == 503
        assert "database is unavailable" in body
        assert "Traceback" not in body
        assert headers["X-Request-ID"] == "probe-12345678"

        status, headers, body = _get(
            f"http://127.0.0.1:{port}/api/v1/models/active/",
            {"X-Request-ID": "probe-api-1234", "Authorization": "Token fs_abcdefghijklmnop"},
        )
        assert status == 503
        error = json.loads(body)
        assert error["error"]["code"] == "database_unavailable"
        assert error["request_id"] == "probe-api-1234"

        # A plain token prediction starts on the fast path; its database error ends in the
        # view's 503 too, never in an answer without its audit row.
        status, headers, body = _post_json(
            f"http://127.0.0.1:{port}/api/v1/predictions/",
            {"inputs": {"rainfall_24h_mm": 10}},
            {"X-Request-ID": "probe-api-5678", "Authorization": "Token fs_abcdefghijklmnop"},
        )
        assert status == 503
        error = json.loads(body)
        assert error["error"]["code"] == "database_unavailable"
        assert error["request_id"] == "probe-api-5678"
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=20)
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("request_id") == "probe-12345678"]
    assert any(r.get("event") == "database_unavailable" for r in mine), output
    assert any(r.get("event") == "request" and r.get("status") == 503 for r in mine), output
