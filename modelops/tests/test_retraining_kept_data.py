"""The CSV a model was trained from, kept beside its artifact: retraining with it, and the
promotion gate's reasons when it cannot compare on recorded outcomes."""

from __future__ import annotations

import hashlib
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.services import model_version_promote
from modelops.retraining import model_version_retrain
from predictions.services import outcome_create, prediction_create

# Every test trains a model from a CSV through train_model, and most retrain it.
pytestmark = pytest.mark.slow

NAME = django_settings.FLOODSITE_MODEL_NAME
# Field-record names the synthetic generator does not produce, so the generator comparison
# cannot judge these models and everything rests on the kept data and the outcomes.
COLUMNS = {
    "rainfall_24h_mm": "rain_day",
    "rainfall_72h_mm": "rain_3day",
    "river_level_m": "gauge_m",
    "river_level_change_24h_m": "gauge_rise_m",
    "distance_to_river_m": "river_dist_m",
    "elevation_m": "height_m",
}
FEATURES = list(COLUMNS.values())
CSV_ROWS, BLANK_LABELS = 2_000, 3


def field_csv(path: Path, *, seed: int = 5, rename: dict[str, str] | None = None) -> Path:
    """A gauge export with a few blank labels, in the columns of COLUMNS (renamed further)."""
    frame = synthetic.generate(CSV_ROWS, seed=seed)[[*COLUMNS, "flooded"]].rename(columns=COLUMNS)
    frame = frame.rename(columns=rename or {})
    frame["flooded"] = np.where(frame["flooded"] == 1, "yes", "no")
    frame.loc[[3, 40, 700], "flooded"] = ""
    frame.to_csv(path, index=False)
    return path


def train_from(path: Path, *, promote: bool) -> ModelVersion:
    args = ["train_model", "--data", str(path), "--blank-target", "drop", "--seed", "3"]
    call_command(*args, *(["--promote"] if promote else []), stdout=StringIO())
    return ModelVersion.objects.order_by("-version")[0]


def record(user, n: int, *, seed: int = 41, rename: dict[str, str] | None = None) -> None:
    """n predictions of the production model, each with the outcome the generator says."""
    rows = synthetic.generate(n, seed=seed).rename(columns=COLUMNS).rename(columns=rename or {})
    names = [(rename or {}).get(name, name) for name in FEATURES]
    for _, row in rows.iterrows():
        inputs = {name: float(row[name]) for name in names}
        prediction = prediction_create(user=user, source="api", inputs=inputs)
        outcome_create(prediction=prediction, user=user, flooded=bool(row["flooded"]))


@pytest.fixture
def csv_production(db, tmp_path) -> ModelVersion:
    """A production model trained from a field CSV; the uploaded file is gone afterwards."""
    source = field_csv(tmp_path / "gauges.csv")
    mv = train_from(source, promote=True)
    source.unlink()  # only the kept copy remains
    return mv


def kept_path(mv: ModelVersion) -> Path:
    return Path(django_settings.MEDIA_ROOT) / mv.manifest["data_fingerprint"]["kept_file"]["file"]


def test_train_model_keeps_the_csv_beside_the_artifact_pinned_by_sha256(db, tmp_path):
    source = field_csv(tmp_path / "gauges.csv")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    mv = train_from(source, promote=False)
    fingerprint = mv.manifest["data_fingerprint"]
    kept = kept_path(mv)
    assert kept.parent == Path(mv.artifact.path).parent
    assert kept.read_bytes() == source.read_bytes()
    assert fingerprint["sha256"] == fingerprint["kept_file"]["sha256"] == digest
    assert fingerprint["load_options"] == {
        "target": "flooded",
        "blank_target": "drop",
        "features": FEATURES,
        "split": "random",
        "calibration": "auto",
    }


def test_retrain_with_original_on_a_csv_model_uses_the_kept_rows_plus_outcomes(
    csv_production, user
):
    record(user, 60)
    mv = model_version_retrain(name=NAME, include_original=True)
    fingerprint = mv.manifest["data_fingerprint"]
    kept_rows = CSV_ROWS - BLANK_LABELS
    assert (fingerprint["audit_rows"], fingerprint["original_rows"]) == (60, kept_rows)
    assert fingerprint["rows"] == kept_rows + 60
    assert "gauges.csv" in fingerprint["original"]
    assert fingerprint["kept_file"] == csv_production.manifest["data_fingerprint"]["kept_file"]
    [held_out] = mv.metrics["comparison"]["sets"]
    assert held_out["n"] == int(np.ceil(0.2 * (kept_rows + 60)))


def test_retrain_with_original_refuses_a_changed_kept_file_naming_the_sha256(csv_production, user):
    record(user, 30)
    path = kept_path(csv_production)
    path.write_bytes(path.read_bytes().replace(b",yes", b",no", 5))
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME, include_original=True)
    assert (caught.value.status_code, caught.value.code) == (409, "integrity")
    assert "SHA-256" in caught.value.message and path.name in caught.value.message
    assert ModelVersion.objects.count() == 1


def test_retrain_with_original_refuses_a_missing_kept_file(csv_production, user):
    record(user, 30)
    kept_path(csv_production).unlink()
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME, include_original=True)
    assert (caught.value.status_code, caught.value.code) == (409, "artifact_missing")
    assert "missing" in caught.value.message
    assert ModelVersion.objects.count() == 1


def test_the_gate_says_features_differ_when_the_outcomes_lack_the_candidates_features(
    csv_production, user, tmp_path
):
    record(user, 300)
    candidate = train_from(
        field_csv(tmp_path / "other.csv", seed=9, rename={"gauge_m": "stage_m"}), promote=False
    )
    with pytest.raises(ApplicationError) as caught:
        model_version_promote(model_version=candidate, user=None, reason="new gauges")
    message = caught.value.message
    assert caught.value.code == "gate_failed"
    assert "features differ" in message and "stage_m" in message
    assert "300 recorded outcomes" in message
    assert "fewer than" not in message

    model_version_promote(model_version=candidate, user=None, reason="new gauges", force=True)
    change = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION)
    assert change.gate_summary().startswith("no common rows; ")
    assert "features differ" in change.gate_summary()  # what the model page shows


def test_the_gate_counts_each_class_when_too_few_outcomes_cover_both_models(
    csv_production, user, tmp_path
):
    record(user, 12)
    candidate = train_from(field_csv(tmp_path / "again.csv", seed=9), promote=False)
    # Same features: the outcomes would do, but there are too few of them.
    floods = int(synthetic.generate(12, seed=41)["flooded"].sum())
    model_version_promote(model_version=candidate, user=None, reason="same gauges", force=True)
    gate = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION).metrics
    notes = " ".join(gate["gate"]["unavailable"])
    assert "too few recorded outcomes of each class" in notes
    assert f"{floods} floods and {12 - floods} non-floods" in notes
    assert f"need {django_settings.GATE_MIN_OUTCOMES} of each" in notes


def test_the_gate_compares_a_csv_candidate_on_its_own_held_out_split(csv_production, user):
    record(user, 80)
    candidate = model_version_retrain(name=NAME, include_original=True)
    model_version_promote(model_version=candidate, user=None, reason="retrained", force=True)
    gate = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION).metrics
    [held_out] = gate["gate"]["sets"]
    assert held_out["name"] == "candidate's held-out split"
    assert held_out["n"] == int(np.ceil(0.2 * (CSV_ROWS - BLANK_LABELS + 80)))
    assert held_out["candidate"]["roc_auc"] > 0.7 and held_out["production"]["roc_auc"] > 0.7
    # Every outcome trained the candidate: the reason they are not used is named.
    assert "no shared rows" in " ".join(gate["gate"]["unavailable"])


def test_retraining_repeats_the_calibration_choice_and_the_recall_targets(db, tmp_path, user):
    source = field_csv(tmp_path / "gauges.csv")
    args = ["--data", str(source), "--blank-target", "drop", "--seed", "3", "--promote"]
    recipe = ["--calibration", "none", "--band-recall", "moderate=0.9,high=0.7"]
    call_command("train_model", *args, *recipe, stdout=StringIO())
    production = ModelVersion.objects.get()
    assert production.manifest["evaluation"]["bands"]["targets"] == {"moderate": 0.9, "high": 0.7}
    record(user, 60)

    mv = model_version_retrain(name=NAME, include_original=True)

    evaluation = mv.manifest["evaluation"]
    assert evaluation["calibration"]["reason"] == "not calibrated: --calibration none"
    assert evaluation["bands"]["source"] == "recall"
    assert evaluation["bands"]["targets"] == {"moderate": 0.9, "high": 0.7}
    assert [band["name"] for band in mv.manifest["risk_bands"]] == ["low", "moderate", "high"]
