"""Tests for scoring, risk bands, out-of-range flags and explanations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.engine import inference, synthetic
from mlcore.engine.errors import SchemaError
from mlcore.engine.explanation import sigmoid
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import Manifest, validate_inputs


@pytest.fixture(params=["sklearn", "onnx"])
def predictor(request, sklearn_predictor, onnx_predictor) -> Predictor:
    return sklearn_predictor if request.param == "sklearn" else onnx_predictor


def typical_row(manifest: Manifest, **changes: float) -> np.ndarray:
    inputs = {spec.name: spec.default for spec in manifest.features} | changes
    return validate_inputs(manifest, inputs)


def test_backend_is_reported(sklearn_predictor, onnx_predictor) -> None:
    assert sklearn_predictor.backend == "sklearn"
    assert onnx_predictor.backend == "onnx"


def test_probabilities_are_valid_and_match_the_pipeline(predictor, trained) -> None:
    probability = predictor.predict_proba(trained.x_test)

    assert probability.shape == (len(trained.x_test),)
    assert np.all((probability >= 0.0) & (probability <= 1.0))
    expected = trained.pipeline.predict_proba(trained.x_test)[:, 1]
    assert np.max(np.abs(probability - expected)) < 1e-5


def test_label_and_band_follow_the_probability(predictor, trained) -> None:
    for prediction in predictor.predict_many(trained.x_test[:300], explain=False):
        band = trained.manifest.band_for(prediction.probability)
        assert prediction.risk_band == band.name
        assert prediction.label == ("flood" if prediction.probability >= 0.5 else "no_flood")
        assert prediction.factors == []


def test_heavy_rain_on_wet_ground_raises_the_risk(predictor, trained) -> None:
    manifest = trained.manifest
    calm = predictor.predict_one(typical_row(manifest))
    storm = predictor.predict_one(
        typical_row(
            manifest,
            rainfall_24h_mm=180.0,
            rainfall_72h_mm=300.0,
            soil_moisture_pct=95.0,
            river_level_m=7.0,
            distance_to_river_m=100.0,
        )
    )

    assert storm.probability > calm.probability + 0.3
    assert storm.label == "flood"
    assert storm.risk_band in {"high", "severe"}
    by_feature = {factor.feature: factor for factor in storm.factors}
    rain_or_river = {"rainfall_24h_mm", "rainfall_72h_mm", "river_level_m", "soil_moisture_pct"}
    assert storm.factors[0].feature in rain_or_river | {"distance_to_river_m"}
    for name in rain_or_river & set(by_feature):
        assert by_feature[name].direction == "raises"
        assert by_feature[name].contribution > 0


def test_factors_are_ranked_by_size_and_signed_consistently(predictor, trained) -> None:
    prediction = predictor.predict_one(trained.x_test[5], top_k=4)

    sizes = [abs(factor.contribution) for factor in prediction.factors]
    assert 0 < len(prediction.factors) <= 4
    assert sizes == sorted(sizes, reverse=True)
    for factor in prediction.factors:
        expected = "raises" if factor.contribution > 0 else "lowers"
        assert factor.direction == expected
        column = trained.manifest.feature_names.index(factor.feature)
        assert factor.value == trained.x_test[5, column]


def test_factors_and_baseline_add_up_to_the_answer(predictor, trained) -> None:
    # Replaces median swaps, whose changes did not add up to anything: every factor is kept,
    # and baseline + contributions is the answer's log-odds.
    for row in trained.x_test[:10]:
        prediction = predictor.predict_one(row)

        total = prediction.baseline + sum(f.contribution for f in prediction.factors)
        assert float(sigmoid(total)) == pytest.approx(prediction.probability, abs=1e-5)


def test_values_outside_the_documented_range_are_flagged(predictor, trained) -> None:
    manifest = trained.manifest
    inside = predictor.predict_one(typical_row(manifest))
    outside = predictor.predict_one(typical_row(manifest, rainfall_24h_mm=750.0, elevation_m=-40.0))

    assert inside.out_of_range == []
    assert outside.out_of_range == ["rainfall_24h_mm", "elevation_m"]
    assert 0.0 <= outside.probability <= 1.0


def test_predict_many_equals_predict_one_row_by_row(predictor, trained, monkeypatch) -> None:
    # Small chunks make the batch cross several chunk boundaries.
    monkeypatch.setattr(inference, "EXPLAIN_CHUNK_ROWS", 7)
    rows = trained.x_test[:40]

    many = predictor.predict_many(rows, top_k=3)
    single = [predictor.predict_one(row, top_k=3) for row in rows]

    assert len(many) == 40
    for batch, one in zip(many, single, strict=True):
        assert batch.probability == pytest.approx(one.probability, abs=1e-12)
        assert batch.risk_band == one.risk_band
        assert batch.label == one.label
        assert [f.feature for f in batch.factors] == [f.feature for f in one.factors]
        for left, right in zip(batch.factors, one.factors, strict=True):
            assert left.contribution == pytest.approx(right.contribution, abs=1e-12)


def test_explained_and_plain_batches_agree(predictor, trained) -> None:
    explained = predictor.predict_many(trained.x_test[:50])
    plain = predictor.predict_many(trained.x_test[:50], explain=False)

    assert [p.probability for p in explained] == pytest.approx([p.probability for p in plain])


def test_prediction_serialises_to_json(predictor, trained) -> None:
    data = predictor.predict_one(trained.x_test[0]).to_dict()

    restored = json.loads(json.dumps(data, allow_nan=False))
    assert set(restored) == {
        "probability",
        "label",
        "risk_band",
        "out_of_range",
        "factors",
        "baseline",
        "calibration",
    }
    assert restored["calibration"] is None  # an uncalibrated model
    assert set(restored["factors"][0]) == {
        "feature",
        "value",
        "contribution",
        "points",
        "direction",
    }


def test_wrong_shapes_and_non_finite_values_are_refused(predictor) -> None:
    with pytest.raises(SchemaError, match="16 values"):
        predictor.predict_proba(np.zeros((2, 3)))
    with pytest.raises(SchemaError, match="exactly one row"):
        predictor.predict_one(np.zeros((2, 16)))
    row = np.zeros(16)
    row[3] = np.nan
    with pytest.raises(SchemaError) as caught:
        predictor.predict_one(row)
    assert caught.value.fields == {synthetic.FEATURE_NAMES[3]: "must be a finite number"}


def test_empty_batch_gives_no_predictions(predictor) -> None:
    empty = np.empty((0, 16))

    assert predictor.predict_many(empty) == []
    assert predictor.predict_proba(empty).shape == (0,)


def test_predictor_works_from_a_stored_manifest(trained, onnx_bytes) -> None:
    stored = Manifest.from_dict(json.loads(json.dumps(trained.manifest.to_dict())))
    fresh = Predictor(trained.pipeline, stored, onnx_bytes=onnx_bytes)
    original = Predictor(trained.pipeline, trained.manifest, onnx_bytes=onnx_bytes)

    row = trained.x_test[11]
    assert fresh.predict_one(row).to_dict() == original.predict_one(row).to_dict()
