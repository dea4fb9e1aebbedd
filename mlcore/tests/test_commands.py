"""The registry's management commands, run as an administrator would run them."""

from __future__ import annotations

import json
import re
from io import StringIO

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from sklearn.metrics import roc_auc_score

from mlcore.engine import synthetic
from mlcore.engine.errors import SchemaError
from mlcore.engine.schema import Manifest, validate_inputs
from mlcore.models import ModelVersion, Stage
from mlcore.selectors import model_version_load


def run(*args, **kwargs) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


@pytest.fixture
def messy_csv(tmp_path):
    """A real-world style export: BOM, CRLF, padded headers, yes/no labels, an id, blanks."""
    frame = synthetic.generate(3_000, seed=11)
    frame.insert(0, "station_id", [f"ST{i:05d}" for i in range(len(frame))])
    labels = np.where(frame.pop("flooded") == 1, " Yes", "no ")
    frame["  flooded "] = labels
    frame.loc[[5, 17, 33], "  flooded "] = ""
    frame = frame.rename(columns={"rainfall_24h_mm": " rainfall_24h_mm "})
    path = tmp_path / "gauges.csv"
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode())
    return path


@pytest.mark.slow
def test_train_model_from_a_messy_csv_registers_a_candidate(db, messy_csv):
    out = run("train_model", data=str(messy_csv), target="flooded", rows=0, blank_target="drop")
    assert "dropped 3 row(s) with a blank target" in out
    assert "station_id" in out
    mv = ModelVersion.objects.get()
    assert mv.stage == Stage.CANDIDATE
    names = [f["name"] for f in mv.manifest["features"]]
    assert "station_id" not in names and "rainfall_24h_mm" in names
    assert mv.manifest["data_fingerprint"]["rows"] == 3_000 - 3
    assert mv.manifest["metrics"]["roc_auc"] > 0.75


def test_train_model_refuses_a_text_feature_naming_the_column(db, tmp_path):
    frame = synthetic.generate(400, seed=3)
    frame["land_use"] = np.where(frame.index % 2 == 0, "urban", "rural")
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(CommandError, match="land_use"):
        run("train_model", data=str(path), target="flooded", features="land_use,slope_deg")
    assert not ModelVersion.objects.exists()


def test_train_model_refuses_a_missing_target_listing_the_columns(db, tmp_path):
    path = tmp_path / "nolabel.csv"
    synthetic.generate(100, seed=3).drop(columns="flooded").to_csv(path, index=False)
    with pytest.raises(CommandError, match="flooded") as exc:
        run("train_model", data=str(path), target="flooded")
    assert "rainfall_24h_mm" in str(exc.value)
    assert not ModelVersion.objects.exists()


@pytest.mark.slow
def test_train_model_without_arguments_trains_and_promotes_the_default(db):
    out = run("train_model", rows=5_000)
    mv = ModelVersion.objects.get()
    assert mv.stage == Stage.PRODUCTION
    assert f"Registered {mv} as production" in out
    # A later synthetic run is a candidate: production is never replaced silently.
    run("train_model", rows=3_000, seed=1)
    assert ModelVersion.objects.get(version=2).stage == Stage.CANDIDATE


def test_promote_and_rollback_commands(register_model):
    first = register_model(promote=True)
    second = register_model()
    assert "is now in production" in run(
        "promote_model", second.name, str(second.version), reason="newer data"
    )
    assert "is back in production" in run("rollback_model", first.name, reason="regression")
    first.refresh_from_db()
    assert first.stage == Stage.PRODUCTION
    with pytest.raises(CommandError, match="does not exist"):
        run("promote_model", first.name, "99", reason="typo")


def test_export_onnx_scores_offline_like_the_service(production_model, tmp_path):
    run("export_onnx", out=str(tmp_path / "edge"))
    stem = f"{production_model.name}-v{production_model.version}"
    manifest = json.loads((tmp_path / "edge" / f"{stem}.manifest.json").read_text())
    session = onnxruntime.InferenceSession(
        str(tmp_path / "edge" / f"{stem}.onnx"), providers=["CPUExecutionProvider"]
    )
    rows = synthetic.generate(200, seed=5)[manifest["onnx_input"]["order"]].to_numpy()
    probability_output = session.get_outputs()[1].name
    signature = manifest["onnx_input"]
    assert session.get_inputs()[0].name == signature["name"]
    offline = session.run(
        [probability_output], {signature["name"]: rows.astype(signature["dtype"])}
    )[0][:, 1]
    served = model_version_load(model_version=production_model).predictor.predict_proba(rows)
    assert np.max(np.abs(offline - served)) <= 1e-5


def test_train_model_asks_what_a_blank_label_means_before_training(db, tmp_path):
    path = tmp_path / "stations.csv"
    synthetic.write_field_records_csv(path, stations=4, years=6, seed=2)

    with pytest.raises(CommandError, match=r"--blank-target no .* yes .* drop"):
        run("train_model", data=str(path), target="Flood?")

    assert not ModelVersion.objects.exists()


@pytest.mark.slow
def test_train_model_on_field_records_reports_the_roc_auc_an_independent_run_finds(db, tmp_path):
    path = tmp_path / "stations.csv"
    synthetic.write_field_records_csv(path, stations=8, years=20, seed=3)

    out = run(
        "train_model",
        data=str(path),
        target="Flood?",
        blank_target="no",
        split="time:year",
        exclude="temperature_c",
        algorithm="logistic",
    )

    mv = ModelVersion.objects.get()
    # The same population, policy and split, computed here from the file with pandas alone.
    frame = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True, na_values=["?"])
    frame.columns = [column.strip() for column in frame.columns]
    flooded = (frame["Flood?"].fillna("").str.strip() == "YES").astype(int)
    test = frame["year"] >= 1997  # the last 4 of 20 years
    features = [feature["name"] for feature in mv.manifest["features"]]
    # The fitted scikit-learn pipeline, which fills the "?" rainfall cells as training did.
    pipeline = model_version_load(model_version=mv).predictor.pipeline
    scores = pipeline.predict_proba(frame.loc[test, features].to_numpy(dtype=np.float64))[:, 1]
    independent = roc_auc_score(flooded[test], scores)
    reported = float(re.search(r"ROC-AUC (\d\.\d{3}) \(95% interval", out).group(1))
    assert abs(reported - independent) <= 0.01
    assert mv.manifest["evaluation"]["test_counts"]["rows"] == int(test.sum())

    # Policy, roles, split, interval, leakage check and calibration are all on the screen.
    assert re.search(r"calibration: (not calibrated|sigmoid|isotonic)", out)
    assert "label policy --blank-target no: before" in out
    assert re.search(r"record_no +id ", out) and re.search(r"easting +id ", out)
    assert re.search(r"year +time ", out) and re.search(r"station +group ", out)
    assert re.search(r"temperature_c +ignored +excluded with --exclude", out)
    assert "split: by time on 'year': trained up to 1996, tested from 1997 on" in out
    assert "leakage check passed" in out
    assert features == ["month", "rain_mm", "max_day_rain_mm", "soil_moisture_pct", "river_level_m"]
    assert mv.manifest["label_policy"]["blank_target"] == "no"
    assert {role["name"] for role in mv.manifest["column_roles"]} == set(frame.columns)


FIELD_SCHEMA = """\
features:
  rain_mm:
    unit: mm
    description: Rain over the month at the gauge.
    kind: number
    scope: moment
    hard_minimum: 0
    hard_maximum: 3000
  month:
    description: Month of the record.
    kind: cyclic
    period: 12
    hard_minimum: 1
    hard_maximum: 12
    scope: moment
  river_level_m: {unit: m, scope: moment, group: River}
  easting: {unit: m, scope: place}
"""


def test_train_model_applies_a_schema_file_to_the_manifest(db, tmp_path):
    data = tmp_path / "stations.csv"
    synthetic.write_field_records_csv(data, stations=6, years=10, seed=5)
    schema = tmp_path / "schema.yaml"
    schema.write_text(FIELD_SCHEMA)

    out = run(
        "train_model",
        "--data",
        str(data),
        "--schema",
        str(schema),
        "--target",
        "Flood?",
        "--blank-target",
        "no",
        "--exclude",
        "temperature_c",
        "--algorithm",
        "random_forest",
    )

    mv = ModelVersion.objects.get()
    features = {feature["name"]: feature for feature in mv.manifest["features"]}
    rain, month = features["rain_mm"], features["month"]
    assert (rain["unit"], rain["kind"], rain["scope"], rain["hard_minimum"]) == (
        "mm",
        "number",
        "moment",
        0.0,
    )
    assert rain["description"] == "Rain over the month at the gauge."
    assert (month["kind"], month["period"], month["hard_maximum"]) == ("cyclic", 12.0, 12.0)
    assert features["river_level_m"]["group"] == "River"
    assert features["max_day_rain_mm"]["unit"] == ""  # not in the file: nothing invented
    assert "feature metadata from the schema file for month, rain_mm, river_level_m" in out
    assert "WARNING: the schema file describes easting" in out
    assert any("describes easting" in line for line in mv.manifest["evaluation"]["warnings"])
    assert mv.onnx_artifact  # the encoded month passed the parity check at export
    manifest = Manifest.from_dict(mv.manifest)
    inputs = {spec.name: spec.default for spec in manifest.features}
    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest, {**inputs, "month": 13, "rain_mm": -1})
    assert set(caught.value.fields) == {"month", "rain_mm"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("features:\n  month: {kind: seasonal}\n", "feature 'month', key 'kind': 'seasonal'"),
        ("features:\n  month: {kind: cyclic\n", "is not valid YAML"),
        ("features:\n  rainfall: {unit: mm}\n", "the data does not have: rainfall"),
        ("features:\n  rain_mm: {hard_maximum: 1}\n", "'rain_mm' has"),
    ],
)
def test_train_model_refuses_a_bad_schema_file_clearly(db, tmp_path, text, words):
    data = tmp_path / "stations.csv"
    synthetic.write_field_records_csv(data, stations=3, years=3, seed=5)
    schema = tmp_path / "schema.yaml"
    schema.write_text(text)

    with pytest.raises(CommandError) as caught:
        run("train_model", data=str(data), schema=str(schema), target="Flood?", blank_target="no")

    assert words in str(caught.value)
    assert not ModelVersion.objects.exists()


def test_train_model_sets_risk_bands_and_says_how_it_calibrated(db):
    output = run("train_model", "--rows", "3000", "--seed", "4", "--bands", "moderate=0.3,high=0.6")
    mv = ModelVersion.objects.get()
    bands = [(band["name"], band["lower"]) for band in mv.manifest["risk_bands"]]
    assert bands == [("low", 0.0), ("moderate", 0.3), ("high", 0.6)]
    assert mv.manifest["evaluation"]["bands"] == {"source": "given"}
    assert "risk bands: as given by --bands" in output
    assert re.search(r"calibration: (sigmoid|isotonic) chosen|calibration: not calibrated", output)
    assert "calibration error on the test rows" in output
    # The served model answers in its own bands: a probability of 0.55 is "moderate" here.
    served = model_version_load(model_version=mv).predictor
    assert served.manifest.band_for(0.55).name == "moderate"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--bands", "high=0.3,moderate=0.6"], "'high' starts at 0.3, not above 'moderate'"),
        (["--bands", "extreme=0.9"], "NAME=NUMBER"),
        (["--bands", "high=0.6", "--band-recall", "high=0.8"], "not both"),
        (["--band-recall", "high=1.2"], "between 0 and 1"),
    ],
)
def test_train_model_refuses_bad_band_options_by_name(db, options, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        run("train_model", "--rows", "600", *options)
    assert not ModelVersion.objects.exists()
