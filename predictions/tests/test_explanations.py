"""Explanations that add up, as a user reads them: the result page and the API."""

from __future__ import annotations

import math
import re
import uuid

import pytest

from predictions.models import Prediction

URL = "/api/v1/predictions/"


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def _adds_up(body: dict) -> None:
    """baseline + factors (+ the calibration step) = the answer, on the log-odds scale and in
    the probability view."""
    baseline = body["baseline"]
    assert baseline is not None
    assert baseline["probability"] == pytest.approx(_sigmoid(baseline["log_odds"]), abs=1e-12)
    step = body["calibration"] or {"log_odds": 0.0, "points": 0.0}
    total = baseline["log_odds"] + sum(f["contribution"] for f in body["factors"])
    total += step["log_odds"]
    # The served probability may come from ONNX (float32): within its parity tolerance.
    assert _sigmoid(total) == pytest.approx(body["probability"], abs=1e-5)
    walked = baseline["probability"] + sum(f["points"] for f in body["factors"]) + step["points"]
    assert walked == pytest.approx(body["probability"], abs=1e-5)
    sizes = [abs(f["contribution"]) for f in body["factors"]]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(
    "changes",
    [{}, {"rainfall_24h_mm": 300, "rainfall_72h_mm": 500, "soil_moisture_pct": 95}],
    ids=["typical", "storm"],
)
def test_api_explanation_on_request_adds_up_to_the_answer(api, typical_inputs, changes):
    response = api.post(
        f"{URL}?explain=1", {"inputs": {**typical_inputs, **changes}}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    _adds_up(body)
    assert len(body["factors"]) >= 3
    # The fixture model is calibrated: the map's step is stated, not folded into the factors.
    assert production_calibrated(body)
    # The audit row keeps the explanation the caller was given.
    row = Prediction.objects.get(pk=body["id"])
    assert row.explanation["factors"] == body["factors"]
    assert row.explanation["baseline"] == body["baseline"]["log_odds"]


def test_api_without_explain_answers_fast_and_says_there_is_none(api, typical_inputs):
    body = api.post(URL, {"inputs": typical_inputs}, format="json").json()

    assert body["factors"] == []
    assert body["baseline"] is None
    # Fetched with explain=1, the same row is explained from its stored inputs.
    fetched = api.get(f"{URL}{body['id']}/?explain=1").json()
    assert fetched["probability"] == body["probability"]
    _adds_up(fetched)


def production_calibrated(body: dict) -> bool:
    row = Prediction.objects.get(pk=body["id"])
    calibrated = row.model_version.manifest.get("calibration") is not None
    return calibrated and body["calibration"] is not None and body["calibration"]["log_odds"] != 0


def _page_numbers(page: str) -> tuple[float, float, list[float]]:
    answer = re.search(r'class="big">([\d.]+)%', page)
    baseline = re.search(r'data-baseline-percent="([-\d.]+)"', page)
    assert answer is not None and baseline is not None, page
    points = [float(v) for v in re.findall(r'data-points="([-\d.]+)"', page)]
    return float(answer.group(1)), float(baseline.group(1)), points


def test_result_page_factors_and_baseline_add_up_to_the_answer(client, analyst, production_model):
    client.force_login(analyst)
    data = {f["name"]: str(f["default"]) for f in production_model.manifest["features"]}
    data.update(submission=str(uuid.uuid4()), rainfall_24h_mm="250", soil_moisture_pct="90")

    response = client.post("/predict/", data)
    page = client.get(response["Location"]).content.decode()

    answer, baseline, points = _page_numbers(page)
    assert "compared with a typical site" not in page
    assert "Calibration (the model's score mapped onto observed flood rates)" in page
    assert "baseline" in page
    assert len(points) >= 3
    # Every number on the page is rounded to 0.1: at most 0.05 off each.
    assert baseline + sum(points) == pytest.approx(answer, abs=0.05 * (len(points) + 2))


def test_result_page_of_an_api_prediction_is_explained_on_display(
    client, api, analyst, typical_inputs
):
    body = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    assert Prediction.objects.get(pk=body["id"]).explanation == {}
    client.force_login(analyst)

    page = client.get(f"/predictions/{body['id']}/").content.decode()

    answer, baseline, points = _page_numbers(page)
    assert points
    assert baseline + sum(points) == pytest.approx(answer, abs=0.05 * (len(points) + 2))
