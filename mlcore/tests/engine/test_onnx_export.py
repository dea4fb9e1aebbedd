"""Tests for ONNX export and its agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures

from mlcore.engine import onnx_export, training
from mlcore.engine.errors import ArtifactError
from mlcore.engine.inference import Predictor


def test_default_model_exports_within_parity_tolerance(trained, onnx_bytes) -> None:
    diff = onnx_export.onnx_parity(trained.pipeline, onnx_bytes, trained.x_test)

    assert diff <= onnx_export.PARITY_TOLERANCE


def test_exported_graph_has_the_agreed_interface(onnx_bytes) -> None:
    model = onnx.load_from_string(onnx_bytes)

    (model_input,) = model.graph.input
    assert model_input.name == "input"
    dims = model_input.type.tensor_type.shape.dim
    assert [dim.dim_value for dim in dims][1] == 16
    assert [output.name for output in model.graph.output] == ["label", "probabilities"]
    assert onnx_export.onnx_input_dtype(onnx_bytes) == "float64"


def test_both_backends_give_the_same_predictions(trained, sklearn_predictor, onnx_predictor):
    rows = trained.x_test[:500]

    via_sklearn = sklearn_predictor.predict_many(rows, top_k=3)
    via_onnx = onnx_predictor.predict_many(rows, top_k=3)

    tolerance = onnx_export.PARITY_TOLERANCE
    for left, right in zip(via_sklearn, via_onnx, strict=True):
        assert abs(left.probability - right.probability) <= tolerance
        assert left.risk_band == right.risk_band
        assert left.label == right.label
        assert left.out_of_range == right.out_of_range
        for a, b in zip(left.factors, right.factors, strict=True):
            assert abs(a.contribution - b.contribution) <= 2 * tolerance


def test_missing_values_are_imputed_like_sklearn(trained, onnx_bytes) -> None:
    rows = trained.x_test[:200].copy()
    rng = np.random.default_rng(0)
    rows[rng.random(rows.shape) < 0.2] = np.nan

    assert onnx_export.onnx_parity(trained.pipeline, onnx_bytes, rows) <= 1e-5


@pytest.mark.parametrize("algorithm", ["logistic", "random_forest"])
def test_other_algorithms_export_within_tolerance(algorithm) -> None:
    data = training.synthetic_training_data(2_000, seed=5)
    model = training.train_model(data, algorithm=algorithm, seed=5)

    exported = onnx_export.convert_to_onnx(model.pipeline, len(data.features))

    diff = onnx_export.onnx_parity(model.pipeline, exported, model.x_test)
    assert diff <= onnx_export.PARITY_TOLERANCE
    assert onnx_export.onnx_input_dtype(exported) == "float32"
    predictor = Predictor(model.pipeline, model.manifest, onnx_bytes=exported)
    assert predictor.predict_one(model.x_test[0]).probability == pytest.approx(
        model.pipeline.predict_proba(model.x_test[:1])[0, 1], abs=1e-5
    )


def test_unsupported_pipeline_step_raises_a_clear_error(trained) -> None:
    pipeline = Pipeline(
        [
            ("poly", PolynomialFeatures(degree=2)),
            ("model", HistGradientBoostingClassifier(max_iter=5)),
        ]
    )
    pipeline.fit(trained.x_test, trained.y_test)

    with pytest.raises(ArtifactError, match="PolynomialFeatures"):
        onnx_export.convert_to_onnx(pipeline, trained.x_test.shape[1])


def test_empty_input_has_perfect_parity(trained, onnx_bytes) -> None:
    assert onnx_export.onnx_parity(trained.pipeline, onnx_bytes, np.empty((0, 16))) == 0.0
