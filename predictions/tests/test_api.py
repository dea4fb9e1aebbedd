"""The prediction API as a client uses it: predict, list, fetch, record outcomes."""

from __future__ import annotations

import logging

import pytest
from django.db import connection

from predictions.models import Outcome, Prediction

URL = "/api/v1/predictions/"


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "django-cursor"])
def test_one_prediction_is_answered_and_logged(
    api, typical_inputs, production_model, analyst, settings, prepared
):
    # On PostgreSQL the audit INSERT is a prepared statement unless the setting is off.
    settings.DATABASE_PREPARED_STATEMENTS = prepared
    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["model"] == {"name": production_model.name, "version": production_model.version}
    assert 0 <= body["probability"] <= 1
    assert body["risk_band"] in {"low", "moderate", "high", "severe"}
    assert body["label"] in {"flood", "no_flood"}
    assert body["out_of_range"] == []
    # No explanation unless asked for (?explain=1, test_explanations.py): it costs far more.
    assert body["factors"] == [] and body["baseline"] is None
    row = Prediction.objects.get(pk=body["id"])
    assert row.user == analyst and row.source == "api"
    assert row.probability == body["probability"]
    assert row.request_id == response["X-Request-ID"]
    assert row.client_ip == "127.0.0.1"
    assert row.latency_ms > 0
    assert row.inputs == {name: float(value) for name, value in typical_inputs.items()}
    # Stored exactly as answered (on PostgreSQL the JSON goes through orjson, audit_writer).
    assert row.explanation == {}
    if connection.vendor == "postgresql":
        # The server holds the INSERT as a prepared statement on this connection, or not.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ['INSERT INTO "predictions_prediction"%'],
            )
            assert cursor.fetchone()[0] == (1 if prepared else 0)


def test_heavy_rain_scores_higher_and_flags_out_of_range(api, typical_inputs):
    calm = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    storm_inputs = {**typical_inputs, "rainfall_24h_mm": 480, "rainfall_72h_mm": 900}
    storm = api.post(f"{URL}?explain=1", {"inputs": storm_inputs}, format="json").json()
    assert storm["probability"] > calm["probability"]
    assert storm["factors"][0]["feature"] in {"rainfall_24h_mm", "rainfall_72h_mm"}
    assert storm["factors"][0]["direction"] == "raises"
    flagged = api.post(URL, {"inputs": {**typical_inputs, "slope_deg": 75}}, format="json")
    assert flagged.status_code == 201
    assert flagged.json()["out_of_range"] == ["slope_deg"]


def test_many_instances_in_one_call(api, typical_inputs):
    instances = [
        {**typical_inputs, "rainfall_24h_mm": r, "rainfall_72h_mm": 2 * r} for r in (0, 120, 450)
    ]
    response = api.post(URL, {"instances": instances}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["count"] == 3
    assert Prediction.objects.count() == 3
    # Each answer belongs to its instance: the same as asking one at a time.
    for instance, answer in zip(instances, body["predictions"], strict=True):
        single = api.post(URL, {"inputs": instance}, format="json").json()
        assert answer["probability"] == pytest.approx(single["probability"], abs=1e-9)
        assert answer["inputs"] == single["inputs"]


def test_list_and_detail_show_only_my_predictions(api, typical_inputs, production_model):
    from accounts.tests.factories import UserFactory, token_for

    mine = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    other = UserFactory(username="bob")
    from rest_framework.test import APIClient

    bob = APIClient()
    bob.credentials(HTTP_AUTHORIZATION=f"Token {token_for(other)}")
    theirs = bob.post(URL, {"inputs": typical_inputs}, format="json").json()

    listing = api.get(URL).json()
    assert [p["id"] for p in listing["results"]] == [mine["id"]]
    assert api.get(f"{URL}{mine['id']}/").json()["id"] == mine["id"]
    hidden = api.get(f"{URL}{theirs['id']}/")
    assert hidden.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"


def test_auditors_see_everyone_and_filter_by_user(api, typical_inputs, analyst):
    from rest_framework.test import APIClient

    from accounts.tests.factories import UserFactory, make_auditor, token_for

    api.post(URL, {"inputs": typical_inputs}, format="json")
    auditor = make_auditor(UserFactory(username="audrey"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(auditor)}")
    everything = client.get(URL, {"user": analyst.username}).json()
    assert everything["count"] == 1
    assert everything["results"][0]["user"] == analyst.username
    assert api.get(URL, {"user": "audrey"}).status_code == 403


def test_filters(api, typical_inputs):
    api.post(URL, {"inputs": typical_inputs}, format="json")
    api.post(URL, {"inputs": {**typical_inputs, "rainfall_24h_mm": 480}}, format="json")
    bands = {p["risk_band"] for p in api.get(URL).json()["results"]}
    for band in bands:
        results = api.get(URL, {"risk_band": band}).json()["results"]
        assert results and all(p["risk_band"] == band for p in results)
    assert api.get(URL, {"source": "web"}).json()["count"] == 0
    assert api.get(URL, {"created_after": "2999-01-01T00:00:00Z"}).json()["count"] == 0
    bad = api.get(URL, {"created_after": "yesterday"})
    assert bad.status_code == 400
    assert "created_after" in bad.json()["error"]["fields"]


def test_record_an_outcome_once(api, typical_inputs, analyst):
    created = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    outcome_url = f"{URL}{created['id']}/outcome/"
    first = api.post(outcome_url, {"flooded": True, "note": "street flooded"}, format="json")
    assert first.status_code == 201
    assert first.json()["flooded"] is True
    outcome = Outcome.objects.get()
    assert outcome.reported_by == analyst
    again = api.post(outcome_url, {"flooded": False}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["fields"] == {"prediction": "already has an outcome"}
    assert api.get(f"{URL}{created['id']}/").json()["outcome"]["note"] == "street flooded"
    known = api.get(URL, {"outcome_known": "true"}).json()
    assert known["count"] == 1


def test_idempotency_key_replays_without_a_second_audit_row(api, typical_inputs):
    body = {"inputs": typical_inputs}
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    second = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Prediction.objects.count() == 1
    changed = {"inputs": {**typical_inputs, "rainfall_24h_mm": 99}}
    conflict = api.post(URL, changed, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert conflict.status_code == 422
    assert "Idempotency-Key" in conflict.json()["error"]["fields"]
    assert Prediction.objects.count() == 1


def test_models_endpoints(api, production_model):
    listing = api.get("/api/v1/models/").json()
    assert listing[0]["stage"] == "production"
    active = api.get("/api/v1/models/active/").json()
    assert active["version"] == production_model.version
    assert active["manifest"]["features"][0]["unit"]
    detail = api.get(f"/api/v1/models/{production_model.name}/{production_model.version}/")
    assert detail.json()["metrics"]["roc_auc"] > 0.7
    assert api.get(f"/api/v1/models/{production_model.name}/99/").status_code == 404


@pytest.mark.parametrize("path", [URL, "/api/v1/models/"])
def test_anonymous_callers_are_refused_in_the_error_format(client, db, path):
    response = client.get(path)
    assert response.status_code in (401, 403)
    body = response.json()
    assert body["error"]["code"] == "not_authenticated"
    assert body["request_id"] == response["X-Request-ID"]


@pytest.mark.parametrize(
    "query",
    [
        {"created_before": "0001-01-01T00:00:00+01:00"},
        {"outcome_known": "perhaps"},
    ],
)
def test_filters_a_database_cannot_use_are_a_400_naming_them(api, typical_inputs, query):
    api.post(URL, {"inputs": typical_inputs}, format="json")
    response = api.get(URL, query)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == set(query)


def test_a_far_time_zone_offset_is_read_as_utc(api, typical_inputs):
    api.post(URL, {"inputs": typical_inputs}, format="json")
    response = api.get(URL, {"created_after": "0664-04-08T20:41:44-22:30"})
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_the_fast_path_and_the_drf_view_answer_alike(api, typical_inputs, settings):
    """A plain token call skips DRF (predictions/api/fastpath.py); an Idempotency-Key sends
    the same call through the DRF view. Callers must not be able to tell them apart."""
    fast = api.post(URL, {"inputs": typical_inputs})
    full = api.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY="same-answer-1")
    assert fast.status_code == full.status_code == 201
    assert fast["Content-Type"] == full["Content-Type"] == "application/json"
    # The same headers (security headers, CSP, request id, Content-Length, Allow...).
    assert sorted(name for name, _ in fast.items()) == sorted(name for name, _ in full.items())
    for header in ("Allow", "Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert fast[header] == full[header], header
    assert fast["Content-Length"] == str(len(fast.content))
    a, b = fast.json(), full.json()
    assert a.keys() == b.keys()
    for key in ("id", "created_at", "latency_ms"):
        a.pop(key), b.pop(key)
    assert a == b
    # Errors the fast path raises itself use the same body as the DRF view's.
    bad = dict(typical_inputs, rainfall_24h_mm="lots")
    fast_error = api.post(URL, {"inputs": bad})
    full_error = api.post(URL, {"inputs": bad}, HTTP_IDEMPOTENCY_KEY="same-answer-2")
    assert fast_error.status_code == full_error.status_code == 400
    assert fast_error.json()["error"] == full_error.json()["error"]
    assert fast_error.content.count(b" ") == full_error.content.count(b" ")  # same rendering


def test_the_fast_path_logs_its_answers_like_the_view(api, typical_inputs, caplog):
    """The fast path answers before the request-id middleware; its answer still carries the
    caller's request id and leaves the same one log line as the view's answer."""
    caplog.set_level(logging.INFO, logger="floodsite.request")
    fast = api.post(URL, {"inputs": typical_inputs}, HTTP_X_REQUEST_ID="trace-fast-0001")
    full = api.post(
        URL,
        {"inputs": typical_inputs},
        HTTP_X_REQUEST_ID="trace-full-0001",
        HTTP_IDEMPOTENCY_KEY="logged-alike-1",
    )
    assert fast.status_code == full.status_code == 201
    assert fast["X-Request-ID"] == "trace-fast-0001"
    lines = [r.msg for r in caplog.records if r.name == "floodsite.request"]
    assert [line["request_id"] for line in lines] == ["trace-fast-0001", "trace-full-0001"]
    assert lines[0].keys() == lines[1].keys()
    for line in lines:
        assert (line["event"], line["method"], line["path"], line["status"]) == (
            "request",
            "POST",
            URL,
            201,
        )
        assert line["duration_ms"] > 0
    assert Prediction.objects.get(pk=fast.json()["id"]).request_id == "trace-fast-0001"


def test_a_scoring_failure_is_a_500_in_the_error_format_on_both_paths(
    api, typical_inputs, production_model, monkeypatch, caplog
):
    """ONNX Runtime failing mid-request (the library, not our code, is made to fail) is a 500
    in the one error format with the request id, on the fast path as on the DRF view, with
    the traceback logged and no audit row."""
    import onnxruntime

    def broken_run(self, *args, **kwargs):
        raise RuntimeError("onnxruntime: out of memory allocating the output tensor")

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", broken_run)
    api.raise_request_exception = False  # answer the 500 as a server would
    caplog.set_level(logging.INFO)
    answers = {
        "fast": api.post(URL, {"inputs": typical_inputs}, HTTP_X_REQUEST_ID="broken-fast-1"),
        "full": api.post(
            URL,
            {"inputs": typical_inputs},
            HTTP_X_REQUEST_ID="broken-full-1",
            HTTP_IDEMPOTENCY_KEY="broken-full-1",
        ),
    }
    for name, response in answers.items():
        assert response.status_code == 500, (name, response.content)
        assert response["Content-Type"] == "application/json", name
        assert response.json() == {
            "error": {"code": "server_error", "message": "Internal server error.", "fields": {}},
            "request_id": f"broken-{name}-1",
        }
        assert response["X-Request-ID"] == f"broken-{name}-1"
        assert "out of memory" not in response.content.decode()  # no internals leak
    request_lines = [r.msg for r in caplog.records if r.name == "floodsite.request"]
    assert [(line["request_id"], line["status"]) for line in request_lines] == [
        ("broken-fast-1", 500),
        ("broken-full-1", 500),
    ]
    errors = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert len(errors) == 2
    assert all("out of memory" in str(r.exc_info[1]) for r in errors)
    assert not Prediction.objects.exists()


def test_over_https_the_fast_path_adds_hsts_as_the_view_does(api, typical_inputs, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    fast = api.post(URL, {"inputs": typical_inputs}, secure=True)
    full = api.post(URL, {"inputs": typical_inputs}, secure=True, HTTP_IDEMPOTENCY_KEY="hsts-1")
    assert fast.status_code == full.status_code == 201
    assert fast["Strict-Transport-Security"] == full["Strict-Transport-Security"]
    assert fast["Strict-Transport-Security"] == "max-age=3600"
    assert sorted(name for name, _ in fast.items()) == sorted(name for name, _ in full.items())
    plain = api.post(URL, {"inputs": typical_inputs})
    assert plain.status_code == 201
    assert "Strict-Transport-Security" not in plain


def test_with_https_required_plain_http_is_redirected_and_scores_nothing(
    api, typical_inputs, settings
):
    settings.SECURE_SSL_REDIRECT = True
    plain = api.post(URL, {"inputs": typical_inputs})
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver" + URL
    assert not Prediction.objects.exists()
    assert api.post(URL, {"inputs": typical_inputs}, secure=True).status_code == 201
    assert Prediction.objects.count() == 1


def test_a_connection_the_database_dropped_is_a_503_then_the_next_call_works(
    transactional_db, production_model, analyst, typical_inputs
):
    """The audit INSERT keeps one cursor per database connection: after the database drops
    the connection, the call that meets it is a 503 with no row, and once the request's end
    has retired the connection (as every server does) the next call gets a new connection
    and a new cursor."""
    if connection.vendor != "postgresql":
        pytest.skip("a server dropping a client connection needs PostgreSQL")
    import psycopg
    from django.db import close_old_connections
    from rest_framework.test import APIClient

    from accounts.tests.factories import token_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(analyst)}")
    assert client.post(URL, {"inputs": typical_inputs}, format="json").status_code == 201
    backend = connection.connection.info.backend_pid
    settings_dict = connection.settings_dict
    with psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])

    dropped = client.post(URL, {"inputs": typical_inputs}, format="json")
    assert dropped.status_code == 503, dropped.content
    assert dropped.json()["error"]["code"] == "database_unavailable"
    close_old_connections()  # what request_finished does in a server
    again = client.post(URL, {"inputs": typical_inputs}, format="json")
    assert again.status_code == 201, again.content
    assert connection.connection.info.backend_pid != backend
    assert Prediction.objects.count() == 2
    assert Prediction.objects.filter(pk=again.json()["id"]).exists()
