"""Shared engine fixtures: one small model trained once per test session."""

from __future__ import annotations

import pytest

from mlcore.engine import onnx_export, synthetic, training
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import DEFAULT_RISK_BANDS, Manifest


@pytest.fixture(scope="session")
def trained() -> training.TrainedModel:
    data = training.synthetic_training_data(5_000, seed=3)
    # Uncalibrated: these tests are about the model itself (test_calibration covers the map).
    return training.train_model(data, seed=3, feature_specs=synthetic.FEATURES, calibration="none")


@pytest.fixture(scope="session")
def onnx_bytes(trained: training.TrainedModel) -> bytes:
    return onnx_export.convert_to_onnx(trained.pipeline, len(trained.manifest.features))


@pytest.fixture(scope="session")
def sklearn_predictor(trained: training.TrainedModel) -> Predictor:
    return Predictor(trained.pipeline, trained.manifest)


@pytest.fixture(scope="session")
def onnx_predictor(trained: training.TrainedModel, onnx_bytes: bytes) -> Predictor:
    return Predictor(trained.pipeline, trained.manifest, onnx_bytes=onnx_bytes)


@pytest.fixture
def manifest() -> Manifest:
    """A manifest over the synthetic features, without a trained model behind it."""
    return Manifest(
        name="flood-risk",
        features=list(synthetic.FEATURES),
        target=synthetic.TARGET,
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=list(DEFAULT_RISK_BANDS),
        algorithm="hgb",
    )
