"""factory-boy factories for the model registry: versions of one small default model.

Training and the ONNX conversion with its parity check take seconds, so they happen once per
test process (``default_prepared``); each ``ModelVersionFactory()`` only stores the prepared
model, writing its files and row into the test's own media folder and database.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import factory
from django.conf import settings

from mlcore.engine import synthetic, training
from mlcore.models import ArtifactFormat, ModelVersion
from mlcore.services import PreparedModel, model_version_prepare, model_version_store


@functools.cache
def default_trained() -> training.TrainedModel:
    """One small model trained on the synthetic generator (callers copy what they change)."""
    data = training.synthetic_training_data(n_rows=6_000, seed=7)
    return training.train_model(
        data, name=settings.FLOODSITE_MODEL_NAME, seed=7, feature_specs=synthetic.FEATURES
    )


def prepared_from(trained: training.TrainedModel, *, check_rows: int = 500) -> PreparedModel:
    """A trained model through the registry's preparation (ONNX, parity, reference), leaving
    ``trained`` as it was."""
    return model_version_prepare(
        pipeline=trained.pipeline,
        manifest=copy.deepcopy(trained.manifest),
        x_check=trained.x_test[:check_rows],
    )


@functools.cache
def default_prepared() -> PreparedModel:
    return prepared_from(default_trained())


@functools.cache
def other_good_prepared() -> PreparedModel:
    """As good as the default model, trained on other rows with another seed: a candidate
    the promotion gate lets through."""
    data = training.synthetic_training_data(n_rows=6_000, seed=8)
    trained = training.train_model(
        data, name=settings.FLOODSITE_MODEL_NAME, seed=8, feature_specs=synthetic.FEATURES
    )
    return prepared_from(trained, check_rows=200)


class ModelVersionFactory(factory.django.DjangoModelFactory[ModelVersion]):
    """The next version of the default model, stored as registration stores it: a candidate,
    or production with ``promote=True`` (through the promotion gate)."""

    class Meta:
        model = ModelVersion

    prepared = factory.LazyFunction(default_prepared)
    fmt = ArtifactFormat.JOBLIB
    notes = ""
    promote = False
    reason = "test fixture"
    created_by = None

    @classmethod
    def _create(cls, model_class: type[ModelVersion], *args: Any, **kwargs: Any) -> ModelVersion:
        return model_version_store(**kwargs)
