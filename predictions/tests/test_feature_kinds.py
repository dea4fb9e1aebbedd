"""A production model with a cyclic month and a category, through every entry point."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.conf import settings as django_settings

from mlcore.engine import feature_schema, synthetic, training
from mlcore.services import PreparedModel
from mlcore.tests.factories import ModelVersionFactory, prepared_from

EDGE_CLIENT = Path(django_settings.BASE_DIR) / "docs" / "edge_client.py"
SCHEMA = """\
features:
  rain_mm: {unit: mm, kind: number, scope: moment, hard_minimum: 0}
  soil: {kind: category, categories: {1: clay, 2: sand, 3: loam}, scope: place}
"""
FEATURES = ["month", "rain_mm", "river_level_m", "soil"]


@pytest.fixture(scope="module")
def trained_coded() -> training.TrainedModel:
    frame = synthetic.generate_field_records(stations=8, years=8, seed=6)
    frame["flooded"] = (frame[synthetic.FIELD_TARGET] == "YES").astype(int)
    frame["soil"] = frame["station_no"] % 3 + 1
    specs = feature_schema.features_from_frame(
        frame, FEATURES, schema=feature_schema.parse_schema(yaml.safe_load(SCHEMA))
    )
    data = training.frame_to_loaded(frame, target="flooded", features=FEATURES)
    return training.train_model(
        data, name=django_settings.FLOODSITE_MODEL_NAME, feature_specs=specs
    )


@pytest.fixture(scope="module")
def prepared_coded(trained_coded) -> PreparedModel:
    return prepared_from(trained_coded, check_rows=len(trained_coded.x_test))


@pytest.fixture
def coded_model(db, prepared_coded):
    return ModelVersionFactory(prepared=prepared_coded, promote=True)


def inputs(**changes: float) -> dict[str, float]:
    return {"month": 1, "rain_mm": 120.0, "river_level_m": 3.1, "soil": 2, **changes}


def test_the_model_page_shows_each_feature_s_kind_and_scope(client, analyst, coded_model):
    client.force_login(analyst)
    page = client.get(f"/models/{coded_model.name}/{coded_model.version}/").content.decode()

    row = page.split('<td class="mono">soil</td>', 1)[1].split("</tr>", 1)[0]
    assert "<td>category: 1 clay, 2 sand, 3 loam</td><td>place</td>" in row
    row = page.split('<td class="mono">month</td>', 1)[1].split("</tr>", 1)[0]
    assert "<td>cyclic, period 12</td><td>moment</td>" in row
    row = page.split('<td class="mono">river_level_m</td>', 1)[1].split("</tr>", 1)[0]
    assert "<td>no unit given</td>" in row  # neither the file nor a curated spec gave one


def test_the_api_and_openapi_describe_kinds_scopes_and_categories(api, coded_model):
    active = api.get("/api/v1/models/active/").json()
    soil = {feature["name"]: feature for feature in active["features"]}["soil"]
    assert (soil["kind"], soil["scope"]) == ("category", "place")
    assert soil["categories"][0] == {"code": 1, "label": "clay"}

    schema = api.get("/api/schema/?format=json").json()
    properties = schema["components"]["schemas"]["PredictionInputs"]["properties"]
    assert properties["soil"]["enum"] == [1, 2, 3]
    assert properties["soil"]["x-categories"] == {"1": "clay", "2": "sand", "3": "loam"}
    assert (properties["month"]["x-kind"], properties["month"]["x-period"]) == ("cyclic", 12.0)
    assert (properties["month"]["minimum"], properties["month"]["maximum"]) == (1, 12)
    detail = schema["components"]["schemas"]["ModelVersionDetailOut"]["properties"]
    assert {"kind", "scope", "categories"} <= set(
        schema["components"]["schemas"]["FeatureOut"]["properties"]
    )
    assert detail["features"]["items"]["$ref"].endswith("/FeatureOut")


def test_an_unknown_code_or_month_13_is_a_400_naming_the_field(api, coded_model):
    answer = api.post("/api/v1/predictions/", {"inputs": inputs()}, format="json")
    assert answer.status_code == 201, answer.content
    factors = {factor["feature"] for factor in answer.json()["factors"]}
    assert factors <= set(FEATURES)  # one share per input, never month_sin or soil=2

    refused = api.post("/api/v1/predictions/", {"inputs": inputs(soil=4, month=13)}, format="json")
    assert refused.status_code == 400
    fields = refused.json()["error"]["fields"]
    assert fields["inputs.soil"] == "must be one of the codes 1 (clay), 2 (sand), 3 (loam)"
    assert fields["inputs.month"] == "must be between 1 and 12 (hard limit)"


def test_the_form_offers_the_category_labels(client, analyst, coded_model):
    client.force_login(analyst)
    page = client.get("/predict/").content.decode()

    select = page.split('<select name="soil"', 1)[1].split("</select>", 1)[0]
    labels = re.findall(r'<option value="(\d)"(?: selected)?>(\w+ \(\d\))</option>', select)
    assert labels == [("1", "clay (1)"), ("2", "sand (2)"), ("3", "loam (3)")]
    assert select.count(" selected>") == 1  # the commonest code in the data
    assert 'name="month"' in page and 'max="12"' in page


def test_the_edge_client_scores_encoded_features_and_refuses_unknown_codes(
    api, coded_model, tmp_path
):
    response = api.get(f"/api/v1/models/{coded_model.name}/{coded_model.version}/onnx")
    assert response.status_code == 200
    (tmp_path / "model.zip").write_bytes(response.content)
    rows = [inputs(month=m, soil=s) for m in (1, 4, 10, 12) for s in (1, 2, 3)]
    served = api.post("/api/v1/predictions/", {"instances": rows}, format="json").json()
    with open(tmp_path / "sites.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FEATURES)
        writer.writeheader()
        writer.writerows([*rows, inputs(soil=7)])

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

    scored = list(csv.DictReader(io.StringIO(result.stdout)))
    offline = np.array([float(line["probability"]) for line in scored[: len(rows)]])
    online = np.array([answer["probability"] for answer in served["predictions"]])
    np.testing.assert_allclose(offline, online, atol=1e-6)
    assert scored[-1]["error"] == "soil must be one of the codes 1 (clay), 2 (sand), 3 (loam)"
    assert result.returncode == 1
