"""The prediction API under hostile or careless input: every refusal is a 4xx in the one error
format that names what to fix, and a refused request leaves no audit row behind."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory, token_for
from predictions.models import IdempotencyRecord, Outcome, Prediction

URL = "/api/v1/predictions/"


def refused(response, status: int, code: str | None = None, *fields: str) -> dict:
    """Assert the one error body; return its ``fields`` for further checks."""
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response["X-Request-ID"]
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    for name in fields:
        assert name in error["fields"], error
    return error["fields"]


def post_raw(client: APIClient, body: bytes | str, content_type: str = "application/json"):
    # DRF encodes a str body and sends bytes as they are; its stubs allow only str.
    return client.generic("POST", URL, body, content_type=content_type)  # type: ignore[arg-type]


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


# --- one set of inputs --------------------------------------------------------------------


def test_a_missing_feature_is_named(api, typical_inputs):
    inputs = {k: v for k, v in typical_inputs.items() if k != "rainfall_24h_mm"}
    fields = refused(api.post(URL, {"inputs": inputs}), 400, "invalid_input")
    assert fields == {"inputs.rainfall_24h_mm": "required"}
    assert Prediction.objects.count() == 0


def test_an_unknown_feature_is_named(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, "moon_phase": 3}})
    fields = refused(response, 400, "invalid_input")
    assert fields == {"inputs.moon_phase": "unknown feature"}
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(
    "value",
    ["abc", "", "12,5", True, False, [1], {"mm": 1}],
    ids=["word", "blank", "comma-decimal", "true", "false", "list", "object"],
)
def test_a_value_that_is_not_a_number_is_named(api, typical_inputs, value):
    response = api.post(URL, {"inputs": {**typical_inputs, "slope_deg": value}})
    fields = refused(response, 400, "invalid_input", "inputs.slope_deg")
    assert set(fields) == {"inputs.slope_deg"}
    assert Prediction.objects.count() == 0


def test_null_counts_as_missing(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, "slope_deg": None}})
    assert refused(response, 400, "invalid_input") == {"inputs.slope_deg": "required"}
    assert Prediction.objects.count() == 0


def test_a_numeric_string_is_accepted_and_stored_as_a_number(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, "slope_deg": " 12.5 "}})
    assert response.status_code == 201, response.content
    assert response.json()["inputs"]["slope_deg"] == 12.5
    assert Prediction.objects.get().inputs["slope_deg"] == 12.5


def test_a_fractional_count_is_refused(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, "historical_flood_count": 2.5}})
    fields = refused(response, 400, "invalid_input")
    assert fields == {"inputs.historical_flood_count": "must be a whole number"}
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_a_parse_error(api, typical_inputs, literal):
    text = json.dumps({"inputs": typical_inputs}).replace("3.5", literal, 1)
    assert literal in text
    refused(post_raw(api, text), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_beyond_float_range_are_named(api, typical_inputs, literal):
    text = json.dumps({"inputs": {**typical_inputs, "slope_deg": "HUGE"}})
    text = text.replace('"HUGE"', literal)
    fields = refused(post_raw(api, text), 400, "invalid_input")
    assert fields == {"inputs.slope_deg": "must be a finite number"}
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("literal", ["1e400", "1" + "0" * 400])
def test_numbers_beyond_float_range_are_named_in_instances(api, typical_inputs, literal):
    text = json.dumps({"instances": [typical_inputs, {**typical_inputs, "slope_deg": "HUGE"}]})
    text = text.replace('"HUGE"', literal)
    fields = refused(post_raw(api, text), 400, "invalid_input")
    assert fields == {"instances[1].slope_deg": "must be a finite number"}
    assert Prediction.objects.count() == 0


def test_an_integer_too_long_to_parse_is_a_parse_error(api, typical_inputs):
    text = json.dumps({"inputs": {**typical_inputs, "slope_deg": "HUGE"}})
    refused(post_raw(api, text.replace('"HUGE"', "9" * 5000)), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


def test_an_out_of_range_value_is_scored_and_flagged(api, typical_inputs):
    # Past the typical range (0-50,000 km²) but possible: scored, with a warning.
    response = api.post(URL, {"inputs": {**typical_inputs, "upstream_catchment_km2": 250_000}})
    assert response.status_code == 201, response.content
    assert response.json()["out_of_range"] == ["upstream_catchment_km2"]
    assert Prediction.objects.get().out_of_range == ["upstream_catchment_km2"]


def test_the_largest_finite_float_is_refused_naming_the_hard_limit(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, "distance_to_river_m": 1.7e308}})
    fields = refused(response, 400, "invalid_input", "inputs.distance_to_river_m")
    assert fields["inputs.distance_to_river_m"] == "must be between 0 and 5000000 m (hard limit)"
    assert not Prediction.objects.exists()


# --- the shape of the body ----------------------------------------------------------------


def test_more_than_1000_instances_are_refused(api, typical_inputs):
    response = api.post(URL, {"instances": [typical_inputs] * 1001})
    fields = refused(response, 400, "too_many_instances", "instances")
    assert "1001" in fields["instances"]
    assert Prediction.objects.count() == 0


def test_exactly_1000_instances_are_scored(api, typical_inputs):
    response = api.post(URL, {"instances": [typical_inputs] * 1000})
    assert response.status_code == 201
    assert response.json()["count"] == 1000
    assert Prediction.objects.count() == 1000


def test_an_empty_instances_list_is_refused(api, typical_inputs):
    refused(api.post(URL, {"instances": []}), 400, None, "instances")
    assert Prediction.objects.count() == 0


def test_one_bad_instance_refuses_the_whole_call(api, typical_inputs):
    instances = [typical_inputs, {**typical_inputs, "slope_deg": "steep"}, typical_inputs]
    fields = refused(api.post(URL, {"instances": instances}), 400, "invalid_input")
    assert fields == {"instances[1].slope_deg": "must be a finite number"}
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("instance", [5, "inputs", None, [1, 2]], ids=repr)
def test_an_instance_that_is_not_an_object_is_named(api, typical_inputs, instance):
    response = api.post(URL, {"instances": [typical_inputs, instance]})
    fields = refused(response, 400, "invalid", "instances")
    assert "1" in fields["instances"]
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("inputs", [[1, 2], "rain", 7, None], ids=repr)
def test_inputs_that_are_not_an_object_are_named(api, inputs):
    refused(api.post(URL, {"inputs": inputs}), 400, "invalid", "inputs")
    assert Prediction.objects.count() == 0


def test_both_inputs_and_instances_are_refused(api, typical_inputs):
    response = api.post(URL, {"inputs": typical_inputs, "instances": [typical_inputs]})
    refused(response, 400, "invalid", "inputs")
    assert Prediction.objects.count() == 0


def test_neither_inputs_nor_instances_is_refused(api, production_model):
    refused(api.post(URL, {}), 400, "invalid", "inputs")
    assert Prediction.objects.count() == 0


def test_an_empty_body_is_refused(api, production_model):
    refused(post_raw(api, b""), 400, "invalid", "inputs")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("name", ["user", "probability", "model_version", "id", "source"])
def test_a_mass_assigned_field_is_named(api, typical_inputs, name):
    response = api.post(URL, {"inputs": typical_inputs, name: 1})
    fields = refused(response, 400, "invalid", name)
    assert set(fields) == {name}
    assert Prediction.objects.count() == 0


def test_every_mass_assigned_field_is_named_at_once(api, typical_inputs, analyst):
    smuggled = {"user": analyst.pk, "probability": 0.0, "model_version": 1, "id": "x"}
    response = api.post(URL, {"inputs": typical_inputs, **smuggled})
    assert set(refused(response, 400, "invalid")) == set(smuggled)
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("body", ["[1, 2]", '"inputs"', "42", "null", "true"])
def test_a_body_that_is_not_an_object_is_refused(api, production_model, body):
    refused(post_raw(api, body), 400, "invalid", "non_field_errors")
    assert Prediction.objects.count() == 0


def test_a_body_over_the_size_cap_is_413(api, typical_inputs, settings):
    padding = "x" * (10 * 1024 * 1024)
    body = json.dumps({"inputs": {**typical_inputs, "note": padding}})
    fields = refused(post_raw(api, body), 413, "too_large", "body")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in fields["body"]
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")], ids=["lists", "objects"])
def test_very_deep_nesting_is_a_parse_error(api, production_model, opener, closer):
    depth = 100_000
    body = '{"inputs": ' + opener * depth + "1" + closer * depth + "}"
    refused(post_raw(api, body), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


def test_nesting_past_the_limit_is_a_parse_error(api, production_model, settings):
    depth = settings.API_MAX_JSON_DEPTH + 1
    body = '{"inputs": ' + "[" * depth + "]" * depth + "}"
    refused(post_raw(api, body), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [b'{"inputs": {"slope_deg": "\xff\xfe"}}', b"\xff\xfe{\x00}", "{}".encode("utf-16")],
    ids=["latin-1-in-string", "garbage", "utf-16"],
)
def test_a_body_that_is_not_utf8_is_a_parse_error(api, production_model, body):
    refused(post_raw(api, body), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


def test_valid_inputs_sent_as_utf16_are_a_parse_error(api, typical_inputs):
    """Declared as JSON (UTF-8) but sent as UTF-16: refused whichever path meets it first."""
    body = json.dumps({"inputs": typical_inputs}).encode("utf-16")
    refused(post_raw(api, body), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("body", ["{", '{"inputs": {}', "{'inputs': {}}", "inputs=1"])
def test_malformed_json_is_a_parse_error(api, production_model, body):
    refused(post_raw(api, body), 400, "parse_error", "body")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
    ],
)
def test_a_body_that_is_not_json_is_415(api, typical_inputs, content_type):
    body = json.dumps({"inputs": typical_inputs})
    refused(post_raw(api, body, content_type), 415, "unsupported_media_type", "Content-Type")
    assert Prediction.objects.count() == 0


def test_json_with_a_charset_is_accepted(api, typical_inputs):
    body = json.dumps({"inputs": typical_inputs})
    response = post_raw(api, body, "application/json; charset=utf-8")
    assert response.status_code == 201, response.content


def test_asking_for_xml_is_406(api, typical_inputs):
    response = api.post(URL, {"inputs": typical_inputs}, HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert Prediction.objects.count() == 0


def test_an_unsupported_method_is_405_in_the_error_format(api, production_model):
    refused(api.put(URL, {}), 405, "method_not_allowed")
    refused(api.delete(URL), 405, "method_not_allowed")


# --- no production model --------------------------------------------------------------------


def test_no_production_model_is_503_naming_the_model(api, register_model, settings):
    register_model(promote=False)
    inputs = {"inputs": {"rainfall_24h_mm": 1}}
    error = api.post(URL, inputs).json()["error"]
    refused(api.post(URL, inputs), 503, "no_production_model")
    assert settings.FLOODSITE_MODEL_NAME in error["message"]
    assert Prediction.objects.count() == 0
    active = api.get("/api/v1/models/active/")
    refused(active, 503, "no_production_model")
    assert settings.FLOODSITE_MODEL_NAME in active.json()["error"]["message"]


# --- other people's predictions and outcomes ----------------------------------------------


@pytest.fixture
def someone_elses_prediction(typical_inputs):
    other = client_for(UserFactory(username="bob"))
    return other.post(URL, {"inputs": typical_inputs}).json()["id"]


@pytest.fixture
def my_prediction(api, typical_inputs):
    return api.post(URL, {"inputs": typical_inputs}).json()["id"]


def test_someone_elses_prediction_is_404(api, someone_elses_prediction):
    refused(api.get(f"{URL}{someone_elses_prediction}/"), 404, "not_found")


def test_an_outcome_on_someone_elses_prediction_is_404(api, someone_elses_prediction):
    response = api.post(f"{URL}{someone_elses_prediction}/outcome/", {"flooded": True})
    refused(response, 404, "not_found")
    assert Outcome.objects.count() == 0


@pytest.mark.parametrize(
    "prediction_id",
    ["not-a-uuid", "1", "00000000-0000-0000-0000-000000000000", "%00", "x" * 300],
)
def test_an_id_that_is_not_a_prediction_is_404(api, production_model, prediction_id):
    refused(api.get(f"{URL}{prediction_id}/"), 404, "not_found")
    refused(api.post(f"{URL}{prediction_id}/outcome/", {"flooded": True}), 404, "not_found")


def test_a_second_outcome_is_409(api, my_prediction):
    url = f"{URL}{my_prediction}/outcome/"
    assert api.post(url, {"flooded": True}).status_code == 201
    refused(api.post(url, {"flooded": False}), 409, "outcome_exists", "prediction")
    assert Outcome.objects.get().flooded is True


def test_an_outcome_observed_in_the_future_is_refused(api, my_prediction):
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()
    response = api.post(
        f"{URL}{my_prediction}/outcome/", {"flooded": True, "observed_at": tomorrow}
    )
    refused(response, 400, "invalid", "observed_at")
    assert Outcome.objects.count() == 0


def test_an_outcome_a_minute_ahead_is_clock_skew(api, my_prediction):
    soon = (timezone.now() + timedelta(minutes=1)).isoformat()
    response = api.post(f"{URL}{my_prediction}/outcome/", {"flooded": True, "observed_at": soon})
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "observed_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday"]
)
def test_an_outcome_time_that_cannot_be_placed_is_refused(api, my_prediction, observed_at):
    response = api.post(
        f"{URL}{my_prediction}/outcome/", {"flooded": True, "observed_at": observed_at}
    )
    refused(response, 400, "invalid", "observed_at")
    assert Outcome.objects.count() == 0


@pytest.mark.parametrize(
    "body,field",
    [
        ({"flooded": True, "reported_by": "mallory"}, "reported_by"),
        ({"flooded": True, "prediction": "x"}, "prediction"),
        ({"flooded": "perhaps"}, "flooded"),
        ({}, "flooded"),
        ({"flooded": True, "note": "x" * 2001}, "note"),
        ({"flooded": True, "note": "nul\x00byte"}, "note"),
    ],
    ids=["reported_by", "prediction", "not-a-boolean", "missing", "long-note", "nul-in-note"],
)
def test_a_bad_outcome_names_the_field(api, my_prediction, body, field):
    refused(api.post(f"{URL}{my_prediction}/outcome/", body), 400, "invalid", field)
    assert Outcome.objects.count() == 0


# --- idempotency --------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_answer(api, typical_inputs):
    body = {"instances": [typical_inputs, typical_inputs]}
    first = api.post(URL, body, HTTP_IDEMPOTENCY_KEY="batch-7")
    second = api.post(URL, body, HTTP_IDEMPOTENCY_KEY="batch-7")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Prediction.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 1


def test_the_same_key_with_another_body_is_422(api, typical_inputs):
    api.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY="k-1")
    other = {"inputs": {**typical_inputs, "slope_deg": 9}}
    response = api.post(URL, other, HTTP_IDEMPOTENCY_KEY="k-1")
    refused(response, 422, "idempotency_key_reused", "Idempotency-Key")
    assert Prediction.objects.count() == 1


def test_keys_belong_to_their_user(api, typical_inputs):
    mine = api.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY="shared").json()
    other = client_for(UserFactory(username="bob"))
    theirs = other.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY="shared")
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine["id"]
    assert Prediction.objects.count() == 2


def test_a_refused_request_does_not_burn_its_key(api, typical_inputs):
    bad = api.post(URL, {"inputs": {"slope_deg": 1}}, HTTP_IDEMPOTENCY_KEY="retry-me")
    refused(bad, 400, "invalid_input")
    good = api.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY="retry-me")
    assert good.status_code == 201
    assert Prediction.objects.count() == 1


@pytest.mark.parametrize("key", ["has spaces", "x" * 256, "tab\tkey", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_refused(api, typical_inputs, key):
    response = api.post(URL, {"inputs": typical_inputs}, HTTP_IDEMPOTENCY_KEY=key)
    refused(response, 400, "invalid", "Idempotency-Key")
    assert Prediction.objects.count() == 0


def test_an_outcome_replays_under_its_key(api, my_prediction):
    url = f"{URL}{my_prediction}/outcome/"
    first = api.post(url, {"flooded": True}, HTTP_IDEMPOTENCY_KEY="outcome-1")
    second = api.post(url, {"flooded": True}, HTTP_IDEMPOTENCY_KEY="outcome-1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Outcome.objects.count() == 1


# --- throttling ---------------------------------------------------------------------------


@pytest.fixture
def low_predict_rate(monkeypatch, throttle_clock):
    from rest_framework.throttling import ScopedRateThrottle

    cache.clear()
    rates = {**ScopedRateThrottle.THROTTLE_RATES, "predict": "2/min"}
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)
    yield throttle_clock
    cache.clear()


def test_the_third_prediction_in_a_minute_is_429(api, typical_inputs, low_predict_rate):
    for _ in range(2):
        assert api.post(URL, {"inputs": typical_inputs}).status_code == 201
    response = api.post(URL, {"inputs": typical_inputs})
    refused(response, 429, "throttled")
    assert response["Retry-After"] == "30"  # the clock is pinned mid-window
    assert Prediction.objects.count() == 2
    # Reads have their own budget.
    assert api.get(URL).status_code == 200
    low_predict_rate.advance(30)  # the next window
    assert api.post(URL, {"inputs": typical_inputs}).status_code == 201


@pytest.mark.parametrize("problem", ["wrong", "expired", "revoked", "deactivated"])
def test_a_bad_token_on_a_plain_prediction_is_401_and_logs_nothing(
    analyst, typical_inputs, problem
):
    """A plain single prediction takes the fast path (predictions/api/fastpath.py); every
    token it cannot use must still end in the DRF view's 401, never in a prediction."""
    from accounts.models import ApiToken

    secret = token_for(analyst)
    header = f"Token {secret}"
    if problem == "wrong":
        header = f"Token {secret[:-1]}{'0' if secret[-1] != '0' else '1'}"
    elif problem == "expired":
        ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    elif problem == "revoked":
        ApiToken.objects.all().delete()
    elif problem == "deactivated":
        analyst.is_active = False
        analyst.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(URL, {"inputs": typical_inputs}, format="json")
    refused(response, 401, "authentication_failed")
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("problem", ["expired", "revoked", "deactivated"])
def test_a_token_that_stops_working_is_refused_on_the_very_next_prediction(
    analyst, typical_inputs, problem
):
    """A web process reuses a token it has checked (API_TOKEN_CACHE_SECONDS), but the audit
    INSERT checks the token again: the next call after a change is a 401 with no row."""
    from accounts.models import ApiToken
    from accounts.services import api_token_revoke

    client = client_for(analyst)
    assert client.post(URL, {"inputs": typical_inputs}, format="json").status_code == 201
    if problem == "expired":
        ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    elif problem == "revoked":
        api_token_revoke(user=analyst, token_key=ApiToken.objects.get().token_key)
    else:
        analyst.is_active = False
        analyst.save()
    for _ in range(2):  # and it stays refused
        refused(client.post(URL, {"inputs": typical_inputs}, format="json"), 401)
    assert Prediction.objects.count() == 1


def test_a_checked_token_is_not_looked_up_again_unless_the_reuse_is_off(
    analyst, typical_inputs, settings, django_assert_num_queries
):
    settings.FLOODSITE_MODEL_RECHECK_SECONDS = 3600  # no registry recheck among the counts
    client = client_for(analyst)
    body = {"inputs": typical_inputs}
    assert client.post(URL, body, format="json").status_code == 201
    with django_assert_num_queries(1):  # the guarded audit INSERT only
        assert client.post(URL, body, format="json").status_code == 201
    settings.API_TOKEN_CACHE_SECONDS = 0
    with django_assert_num_queries(2):  # the token lookup, then the INSERT
        assert client.post(URL, body, format="json").status_code == 201
    assert Prediction.objects.filter(user=analyst).count() == 3


def test_the_scheme_word_in_lower_case_still_works(analyst, typical_inputs):
    """The fast path only knows "Token "; other spellings knox accepts go through DRF."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"token {token_for(analyst)}")
    assert client.post(URL, {"inputs": typical_inputs}, format="json").status_code == 201
    assert Prediction.objects.count() == 1
