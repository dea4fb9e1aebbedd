"""Tests for category and cyclic features encoded inside the pipeline, in scikit-learn and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from mlcore.engine import artifacts, encoding, explanation, onnx_export, synthetic, training
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import FeatureSpec

MONTH = FeatureSpec(
    "month",
    "int",
    "",
    1.0,
    12.0,
    "Month of the record.",
    6.0,
    "When",
    hard_minimum=1.0,
    hard_maximum=12.0,
    kind="cyclic",
    period=12.0,
    scope="moment",
)
SOIL = FeatureSpec(
    "soil",
    "int",
    "",
    1.0,
    3.0,
    "Soil under the station.",
    1.0,
    "Where",
    kind="category",
    categories=((1, "clay"), (2, "sand"), (3, "loam")),
    scope="place",
)
RAIN = FeatureSpec(
    "rain_mm", "float", "mm", 0.0, 400.0, "Rain in the month.", 30.0, "Weather", hard_minimum=0.0
)
RIVER = FeatureSpec("river_level_m", "float", "m", 0.0, 10.0, "River stage.", 2.0, "Weather")
SPECS = [MONTH, RAIN, RIVER, SOIL]
NAMES = [spec.name for spec in SPECS]


def field_data() -> training.LoadedData:
    frame = synthetic.generate_field_records(stations=8, years=10, seed=2)
    frame["flooded"] = (frame[synthetic.FIELD_TARGET] == "YES").astype(int)
    frame["soil"] = frame["station_no"] % 3 + 1
    return training.frame_to_loaded(frame, target="flooded", features=NAMES)


@pytest.fixture(scope="module", params=["hgb", "logistic", "random_forest"])
def encoded(request) -> training.TrainedModel:
    return training.train_model(field_data(), algorithm=request.param, seed=1, feature_specs=SPECS)


def test_a_month_becomes_a_point_on_a_circle_and_a_category_one_column_per_code() -> None:
    encoder = encoding.encoder_for(SPECS).fit(np.zeros((1, 4)))
    rows = np.array([[1, 10.0, 2.0, 2], [12, 0.0, 1.0, 3], [7, 5.0, 1.5, 9]])

    out = encoder.transform(rows)

    assert list(encoder.get_feature_names_out(NAMES)) == [
        "month_sin",
        "month_cos",
        "rain_mm",
        "river_level_m",
        "soil=1",
        "soil=2",
        "soil=3",
    ]
    assert out[0].tolist() == [0.0, 1.0, 10.0, 2.0, 0.0, 1.0, 0.0]
    # December is as close to January as February is.
    assert np.hypot(*(out[1, :2] - out[0, :2])) == pytest.approx(2 * np.sin(np.pi / 12))
    assert out[2, :2].tolist() == [0.0, -1.0]  # July, opposite January
    assert out[2, 4:].tolist() == [0.0, 0.0, 0.0]  # a code not in the list: no column set


def test_the_training_pipeline_encodes_only_when_a_feature_needs_it() -> None:
    plain = training.build_pipeline("hgb", features=[RAIN, RIVER])
    coded = training.build_pipeline("logistic", features=SPECS)

    assert [name for name, _ in plain.steps] == ["impute", "model"]
    assert [name for name, _ in coded.steps] == ["impute", "encode", "scale", "model"]


def test_an_encoded_pipeline_exports_to_onnx_within_parity(encoded) -> None:
    onnx_bytes = onnx_export.convert_to_onnx(encoded.pipeline, len(SPECS))
    rows = np.vstack([encoded.x_test, [[m, 50.0, 2.5, s] for m in range(1, 13) for s in (1, 2, 3)]])

    assert onnx_export.onnx_parity(encoded.pipeline, onnx_bytes, rows) <= (
        onnx_export.PARITY_TOLERANCE
    )
    assert onnx_export.onnx_input_dtype(onnx_bytes) == "float64"
    model_input = encoded.pipeline.steps[-1][1].n_features_in_
    assert model_input == 7  # the model saw the encoded columns, the graph takes the inputs


def test_explanations_add_up_and_name_each_input_once(encoded) -> None:
    onnx_bytes = onnx_export.convert_to_onnx(encoded.pipeline, len(SPECS))
    predictor = Predictor(encoded.pipeline, encoded.manifest, onnx_bytes=onnx_bytes)
    explainer = predictor.explainer
    assert explainer is not None

    contributions = explainer.contributions(encoded.x_test)
    log_odds = explanation.log_odds(encoded.pipeline.predict_proba(encoded.x_test)[:, 1])

    assert contributions.shape == (len(encoded.x_test), len(SPECS))
    # Rows past the log-odds clip cannot add up by construction; the rest must, exactly.
    inside = np.abs(log_odds) < 15
    assert inside.mean() > 0.5
    gap = explainer.baseline + contributions.sum(axis=1) - log_odds
    assert np.abs(gap[inside]).max() < 1e-8
    # The explainer encodes without scikit-learn's per-call checks, to the same columns.
    assert explainer._plain_steps is not None
    prepare = Pipeline(encoded.pipeline.steps[:-1])
    np.testing.assert_array_equal(
        explainer._model_space(encoded.x_test),
        prepare.transform(encoded.x_test).astype(
            np.float32 if encoded.manifest.algorithm == "random_forest" else np.float64
        ),
    )
    (scored,) = predictor.predict_many(encoded.x_test[:1], top_k=len(SPECS))
    assert sorted(factor.feature for factor in scored.factors) == sorted(NAMES)


def test_an_encoded_pipeline_survives_the_safe_artifact_format(tmp_path, encoded) -> None:
    path = tmp_path / "model.skops"
    digest = artifacts.save_artifact(encoded.pipeline, path, fmt="skops")

    loaded = artifacts.load_artifact(
        path,
        expected_sha256=digest,
        fmt="skops",
        trained_sklearn_version=encoded.manifest.library_versions["scikit-learn"],
    )

    np.testing.assert_array_equal(
        loaded.predict_proba(encoded.x_test), encoded.pipeline.predict_proba(encoded.x_test)
    )
