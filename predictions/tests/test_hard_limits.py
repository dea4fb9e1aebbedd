"""Impossible values (outside a feature's hard limits) are refused on every path, naming the
field and the limit; values only outside the typical range are still scored with a warning."""

from __future__ import annotations

import csv
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory, make_auditor
from mlcore.engine.schema import Manifest
from mlcore.tests.factories import ModelVersionFactory, default_prepared
from modelops.services import monitoring_report_create
from predictions import batches
from predictions.models import BatchRowError, BatchStatus, Prediction, Source
from predictions.services import prediction_create_many
from predictions.tests.test_batches import run_job, upload
from predictions.tests.test_views import form_data

URL = "/api/v1/predictions/"
EDGE_CLIENT = Path(django_settings.BASE_DIR) / "docs" / "edge_client.py"
# What the probe sent: each is physically impossible, and each was scored.
IMPOSSIBLE = {"soil_moisture_pct": 150, "snowmelt_mm": -40, "river_level_m": 1e30}
LIMITS = {
    "soil_moisture_pct": "must be between 0 and 100 % (hard limit)",
    "snowmelt_mm": "must be between 0 and 1000 mm (hard limit)",
    "river_level_m": "must be between -10 and 100 m (hard limit)",
}


def assert_refused_naming_limits(response, prefix: str = "inputs.") -> None:
    assert response.status_code == 400, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["fields"] == {f"{prefix}{name}": reason for name, reason in LIMITS.items()}


# --- the web form and the what-if -------------------------------------------------------------


def test_the_form_refuses_impossible_values_next_to_each_field(client, analyst, production_model):
    client.force_login(analyst)
    page = client.get("/predict/").content.decode()
    assert 'min="0" max="100"' in page  # the browser knows the limits too

    response = client.post("/predict/", form_data(production_model, **IMPOSSIBLE))

    assert response.status_code == 400
    text = response.content.decode()
    for reason in LIMITS.values():
        assert reason[:1].upper() + reason[1:] + "." in text
    assert not Prediction.objects.exists()


def test_the_what_if_refuses_an_impossible_value(client, analyst, production_model):
    client.force_login(analyst)
    client.post("/predict/", form_data(production_model))
    original = Prediction.objects.get()

    response = client.post(
        f"/predictions/{original.pk}/what-if/",
        {
            "feature_1": "river_level_m",
            "value_1": "1e30",
            "feature_2": "soil_moisture_pct",
            "value_2": "150",
        },
        headers={"HX-Request": "true"},
    )

    text = response.content.decode()
    assert "River level must be between -10 and 100 m (hard limit)." in text
    assert "Soil moisture must be between 0 and 100 % (hard limit)." in text
    assert "Risk rises by" not in text and "Risk falls by" not in text
    assert Prediction.objects.count() == 1


# --- the API ----------------------------------------------------------------------------------


def test_the_api_refuses_impossible_inputs_through_the_drf_view(api, typical_inputs):
    # An Idempotency-Key sends a single prediction through the DRF view, not the fast path.
    response = api.post(
        URL, {"inputs": {**typical_inputs, **IMPOSSIBLE}}, HTTP_IDEMPOTENCY_KEY="limits-1"
    )
    assert_refused_naming_limits(response)
    assert not Prediction.objects.exists()


def test_the_fast_path_refuses_impossible_inputs(api, typical_inputs):
    response = api.post(URL, {"inputs": {**typical_inputs, **IMPOSSIBLE}})
    assert_refused_naming_limits(response)
    assert not Prediction.objects.exists()


def test_instances_with_one_impossible_row_are_refused_naming_the_row(api, typical_inputs):
    instances = [typical_inputs, {**typical_inputs, **IMPOSSIBLE}]
    response = api.post(URL, {"instances": instances})
    assert_refused_naming_limits(response, prefix="instances[1].")
    assert not Prediction.objects.exists()


def test_values_outside_the_typical_range_but_possible_are_still_scored(api, typical_inputs):
    possible = {**typical_inputs, "slope_deg": 75, "river_level_m": 40}
    response = api.post(URL, {"inputs": possible})
    assert response.status_code == 201, response.content
    assert response.json()["out_of_range"] == ["river_level_m", "slope_deg"]


def test_the_openapi_schema_shows_the_hard_limits(api, production_model):
    schema = api.get("/api/schema/?format=json").json()
    soil = schema["components"]["schemas"]["PredictionInputs"]["properties"]["soil_moisture_pct"]
    assert (soil["minimum"], soil["maximum"]) == (0, 100)
    rain = schema["components"]["schemas"]["PredictionInputs"]["properties"]["rainfall_24h_mm"]
    assert (rain["minimum"], rain["x-typical-maximum"]) == (0, 500)
    assert rain["maximum"] > 500


def test_the_model_page_lists_the_hard_limits(client, admin_user, production_model):
    client.force_login(admin_user)
    page = client.get(f"/models/{production_model.name}/{production_model.version}/")
    row = page.content.decode().split('<td class="mono">soil_moisture_pct</td>', 1)[1]
    assert "<td>between 0 and 100 %</td>" in row[: row.index("</tr>")]


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_row_with_an_impossible_value_is_a_row_error(analyst, production_model):
    from mlcore.engine import synthetic

    frame = synthetic.generate(4, seed=3).drop(columns="flooded")
    frame.loc[1, "river_level_m"] = -999999
    frame.loc[2, "soil_moisture_pct"] = 150
    job = run_job(
        batches.batch_create(owner=analyst, source="web", upload=upload(frame.to_csv(index=False)))
    )

    assert job.status == BatchStatus.PARTIAL
    assert (job.total_rows, job.failed_rows) == (4, 2)
    assert sorted(Prediction.objects.filter(batch=job).values_list("batch_row", flat=True)) == [
        1,
        4,
    ]
    errors = {(e.row_number, e.column): e.reason for e in BatchRowError.objects.filter(job=job)}
    assert errors == {
        (2, "river_level_m"): LIMITS["river_level_m"],
        (3, "soil_moisture_pct"): LIMITS["soil_moisture_pct"],
    }
    report = Path(job.error_file.path).read_text()
    assert f"2,river_level_m,{LIMITS['river_level_m']}" in report


# --- the edge client --------------------------------------------------------------------------


def test_the_edge_client_flags_rows_outside_the_hard_limits(api, production_model, tmp_path):
    bundle = api.get(f"/api/v1/models/{production_model.name}/{production_model.version}/onnx")
    assert bundle.status_code == 200
    (tmp_path / "model.zip").write_bytes(bundle.content)
    defaults = {f["name"]: f["default"] for f in production_model.manifest["features"]}
    rows = [defaults, {**defaults, "river_level_m": -999999}, {**defaults, **IMPOSSIBLE}]
    with open(tmp_path / "sites.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(defaults))
        writer.writeheader()
        writer.writerows(rows)

    result = subprocess.run(
        [
            sys.executable,
            str(EDGE_CLIENT),
            str(tmp_path / "model.zip"),
            str(tmp_path / "sites.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert "2 of 3 rows refused" in result.stderr
    scored = list(csv.DictReader(io.StringIO(result.stdout)))
    served = api.post(URL, {"inputs": defaults}).json()
    assert float(scored[0]["probability"]) == pytest.approx(served["probability"], abs=1e-6)
    assert scored[0]["error"] == ""
    assert (scored[1]["probability"], scored[1]["risk_band"]) == ("", "")
    assert scored[1]["error"] == f"river_level_m {LIMITS['river_level_m']}"
    order = [f["name"] for f in production_model.manifest["features"] if f["name"] in LIMITS]
    assert scored[2]["error"] == "; ".join(f"{name} {LIMITS[name]}" for name in order)


# --- models registered before hard limits, and monitoring -------------------------------------


@pytest.fixture
def version_without_limits(db):
    """A version registered before manifests carried hard limits."""
    prepared = default_prepared()
    data = prepared.manifest.to_dict()
    for feature in data["features"]:
        feature.pop("hard_minimum", None)
        feature.pop("hard_maximum", None)
    without = dataclasses.replace(prepared, manifest=Manifest.from_dict(data))
    return ModelVersionFactory(
        prepared=without, promote=True, reason="registered before hard limits"
    )


@pytest.mark.slow
def test_old_rows_with_absurd_values_never_print_an_unbounded_mean(
    version_without_limits, analyst, trained_default
):
    from mlcore.engine import synthetic

    typical = {spec.name: spec.default for spec in synthetic.FEATURES}
    # No limits in the manifest, no refusal: the old version still serves these.
    rows = [{**typical, "rainfall_24h_mm": 1.7e307 if i % 2 else 3.0} for i in range(200)]
    prediction_create_many(user=analyst, source=Source.API, instances=rows)
    monitoring_report_create(window_minutes=60)

    auditor = make_auditor(UserFactory(username="audrey"))
    client = Client()
    client.force_login(auditor)
    page = client.get(reverse("monitoring")).content.decode()
    row = page[page.index('<th scope="row">rainfall_24h_mm</th>') :]
    row = row[: row.index("</tr>")]
    training_max = trained_default.manifest.reference["rainfall_24h_mm"]["max"]
    shown = row.split('<td class="num">')[3].split(" vs ")[0]
    assert float(shown.replace(",", "")) <= training_max
    assert "100 outside the training range" in row
    assert "e+30" not in page and "1700000" not in page and ">inf<" not in row.lower()
