"""Calibration: maps chosen on held-out training rows, served the same by every backend."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.engine import calibration, onnx_export, synthetic, training
from mlcore.engine.errors import DataError, SchemaError
from mlcore.engine.explanation import log_odds
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import Manifest, bands_with_lowers, parse_band_option


def _scores(n: int, *, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true probability, and a model score ``sharpness`` times too sure."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(-1.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(np.int64)
    return 1 / (1 + np.exp(-sharpness * truth)), y


def test_an_overconfident_score_gets_a_map_that_matches_observed_rates_on_new_rows():
    p, y = _scores(3_000, sharpness=3.0, seed=1)
    chosen, report = calibration.choose(p, y, seed=0)
    assert chosen is not None and report["method"] in calibration.METHODS
    assert report["reason"].startswith(f"{report['method']} chosen")
    fresh_p, fresh_y = _scores(20_000, sharpness=3.0, seed=2)
    before = calibration.reliability(fresh_y, fresh_p)["ece"]
    after = calibration.reliability(fresh_y, chosen.apply(fresh_p))["ece"]
    assert before > 0.08 and after < 0.02


def test_a_calibrated_score_and_a_small_slice_are_left_alone_and_say_why():
    p, y = _scores(3_000, sharpness=1.0, seed=3)
    chosen, report = calibration.choose(p, y, seed=0)
    assert chosen is None and report["method"] == "none"
    assert "already about as calibrated" in report["reason"]

    few_p, few_y = _scores(150, sharpness=3.0, seed=4)
    chosen, report = calibration.choose(few_p, few_y)
    assert chosen is None and "150 rows" in report["reason"]


def test_the_isotonic_map_rises_without_cliffs_and_never_reaches_zero_or_one():
    p, y = _scores(5_000, sharpness=2.0, seed=5)
    chosen, _ = calibration.choose(p, y, method="isotonic")
    assert chosen is not None and chosen.method == "isotonic"
    x, mapped = np.array(chosen.x), np.array(chosen.y)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(mapped) >= 0)
    # Each point stands for at least STEP_SHARE of the rows, so there are at most 1/STEP_SHARE.
    assert len(x) <= 1 / calibration.STEP_SHARE
    assert mapped.min() > 0 and mapped.max() < 1
    grid = np.linspace(0, 1, 10_001)
    assert np.max(np.abs(np.diff(chosen.apply(grid)))) < 0.01


def test_a_malformed_map_is_refused_when_the_manifest_loads(manifest):
    data = manifest.to_dict()
    data["calibration"] = {"method": "isotonic", "x": [0.2, 0.1], "y": [0.1, 0.2]}
    with pytest.raises(SchemaError, match="increasing"):
        Manifest.from_dict(data)
    data["calibration"] = {"method": "platt"}
    with pytest.raises(SchemaError, match="method"):
        Manifest.from_dict(data)


def _complete(rows: np.ndarray) -> np.ndarray:
    """The rows a user could submit: the file's blank cells are refused when serving."""
    return rows[np.isfinite(rows).all(axis=1)]


@pytest.fixture(scope="module")
def field_model(tmp_path_factory):
    """A gradient-boosting model on the field-records file: small and overfit, so too sure."""
    path = tmp_path_factory.mktemp("field") / "records.csv"
    synthetic.write_field_records_csv(path, seed=0)
    data = training.load_training_csv(path, target=synthetic.FIELD_TARGET, blank_target="no")
    return training.train_model(data, seed=0)


def test_training_calibrates_an_overfit_model_and_the_test_rows_confirm_it(field_model):
    manifest = field_model.manifest
    report = manifest.evaluation["calibration"]
    assert manifest.calibration is not None and report["method"] == "sigmoid"
    # Fitted on a slice of the training rows, never on the test rows it is judged on.
    rows = manifest.data_fingerprint["rows"]
    assert report["rows"] + manifest.metrics["n_train"] + manifest.metrics["n_test"] == rows
    assert report["reliability"]["ece"] < report["reliability_uncalibrated"]["ece"] / 2
    assert manifest.metrics["brier"] < manifest.metrics["uncalibrated_brier"]
    rows = _complete(field_model.x_test)
    served = Predictor(field_model.pipeline, manifest).predict_proba(rows)
    bare = field_model.pipeline.predict_proba(rows)[:, 1]
    mapping = calibration.Calibration.from_dict(manifest.calibration)
    assert mapping is not None
    np.testing.assert_allclose(served, mapping.apply(bare))
    lines = training.assessment.describe_evaluation(manifest.metrics, manifest.evaluation)
    assert any(line.startswith("calibration: sigmoid chosen") for line in lines)


@pytest.fixture(scope="module", params=["hgb", "logistic", "random_forest"])
def bare_model(request):
    data = training.synthetic_training_data(3_000, seed=1)
    return training.train_model(data, algorithm=request.param, calibration="none", seed=1)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_the_onnx_graph_ends_with_the_map_and_serves_what_scikit_learn_serves(bare_model, method):
    rows = bare_model.x_test
    mapping, _ = calibration.choose(
        bare_model.pipeline.predict_proba(rows)[:, 1], bare_model.y_test, method=method
    )
    assert mapping is not None and mapping.method == method
    manifest = Manifest.from_dict(
        {**bare_model.manifest.to_dict(), "calibration": mapping.to_dict()}
    )
    onnx_bytes = onnx_export.convert_to_onnx(bare_model.pipeline, rows.shape[1], mapping)
    assert onnx_export.OnnxSession(onnx_bytes).calibration == method
    assert (
        onnx_export.onnx_parity(bare_model.pipeline, onnx_bytes, rows, mapping)
        <= onnx_export.CALIBRATED_PARITY_TOLERANCE
    )
    assert (
        onnx_export.onnx_parity(bare_model.pipeline, onnx_bytes, rows, before_calibration=True)
        <= onnx_export.PARITY_TOLERANCE
    )
    # The served predictor does not calibrate twice, and scikit-learn's applies the map.
    served = Predictor(bare_model.pipeline, manifest, onnx_bytes=onnx_bytes).predict_proba(rows)
    local = Predictor(bare_model.pipeline, manifest).predict_proba(rows)
    np.testing.assert_allclose(local, mapping.apply(bare_model.pipeline.predict_proba(rows)[:, 1]))
    assert np.max(np.abs(served - local)) <= onnx_export.CALIBRATED_PARITY_TOLERANCE


def test_explanations_of_a_calibrated_model_still_add_up_to_the_answer(field_model):
    predictor = Predictor(field_model.pipeline, field_model.manifest)
    for row in _complete(field_model.x_test)[:20]:
        answer = predictor.predict_one(row)
        assert answer.calibration is not None
        total = answer.baseline + sum(f.contribution for f in answer.factors) + answer.calibration
        assert total == pytest.approx(float(log_odds(answer.probability)), abs=1e-9)
        assert answer.explanation_dict()["calibration"] == answer.calibration


def test_bands_chosen_for_recall_catch_that_share_of_held_out_floods(tmp_path):
    data = training.synthetic_training_data(8_000, seed=2)
    trained = training.train_model(
        data, seed=2, band_recall=[("moderate", 0.95), ("high", 0.8), ("severe", 0.5)]
    )
    manifest = trained.manifest
    bands = manifest.evaluation["bands"]
    assert bands["source"] == "recall"
    assert [band.name for band in manifest.risk_bands] == ["low", "moderate", "high", "severe"]
    assert [band.lower for band in manifest.risk_bands[1:]] == [
        bands["lowers"]["moderate"],
        bands["lowers"]["high"],
        bands["lowers"]["severe"],
    ]
    # Chosen on the calibration slice; the test rows land near each target.
    recall = manifest.metrics["recall_at_band"]
    assert recall["moderate"] == pytest.approx(0.95, abs=0.1)
    assert recall["high"] == pytest.approx(0.8, abs=0.1)
    assert recall["severe"] == pytest.approx(0.5, abs=0.1)


def test_too_few_rows_to_choose_bands_for_recall_is_refused_by_name():
    data = training.synthetic_training_data(400, seed=2)
    with pytest.raises(DataError, match="--band-recall") as caught:
        training.train_model(data, band_recall=[("high", 0.8)])
    assert "band_recall" in caught.value.fields


def test_band_options_name_what_is_wrong():
    assert parse_band_option("moderate=0.3, high=0.6") == [("moderate", 0.3), ("high", 0.6)]
    lowers = [band.lower for band in bands_with_lowers({"high": 0.6, "moderate": 0.3})]
    assert lowers == [0.0, 0.3, 0.6]
    for text, message in [
        ("extreme=0.9", "NAME=NUMBER"),
        ("high=1.5", "between 0 and 1"),
        ("high=abc", "between 0 and 1"),
        ("high=0.4,high=0.5", "twice"),
        ("", "names no band"),
    ]:
        with pytest.raises(SchemaError, match=message):
            parse_band_option(text)
    with pytest.raises(SchemaError, match="not above"):
        bands_with_lowers({"moderate": 0.6, "high": 0.3})
