"""The promotion gate reads recorded outcomes through this app's reader (modelops.outcomes)."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings as django_settings

from mlcore import outcomes
from mlcore.engine import synthetic, training
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.outcomes import outcome_reader_register
from mlcore.services import model_version_promote, model_version_register
from modelops.outcomes import outcomes_for_gate
from predictions.services import outcome_create, prediction_create


@pytest.fixture(scope="module")
def other_good_model() -> training.TrainedModel:
    """As good as the fixture model, trained on other rows with another seed."""
    data = training.synthetic_training_data(n_rows=6_000, seed=8)
    return training.train_model(
        data, name=django_settings.FLOODSITE_MODEL_NAME, seed=8, feature_specs=synthetic.FEATURES
    )


def register(trained: training.TrainedModel) -> ModelVersion:
    return model_version_register(
        pipeline=trained.pipeline,
        manifest=copy.deepcopy(trained.manifest),
        x_check=trained.x_test[:200],
    )


def test_recorded_outcomes_join_the_comparison_once_there_are_enough(
    production_model, other_good_model, user, settings
):
    settings.GATE_MIN_OUTCOMES = 5
    # Both small fixture models are calibrated, which puts fewer floods at 0.5 or above; the
    # recall floor is not what this test is about.
    settings.GATE_MIN_RECALL_HIGH = 0.3
    rows = synthetic.generate(400, seed=21)
    for _, row in rows.iterrows():
        inputs = {name: float(row[name]) for name in synthetic.FEATURE_NAMES}
        prediction = prediction_create(user=user, source="web", inputs=inputs)
        outcome_create(prediction=prediction, user=user, flooded=bool(row["flooded"]))
    candidate = register(other_good_model)
    model_version_promote(model_version=candidate, user=None, reason="with outcomes")
    gate = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION).metrics
    names = [item["name"] for item in gate["gate"]["sets"]]
    assert names == ["synthetic held-out", "recorded outcomes"]
    outcomes = gate["gate"]["sets"][1]
    assert outcomes["n"] == 400 and outcomes["floods"] == int(rows["flooded"].sum())


def test_the_app_registers_its_reader_and_the_gate_says_when_none_is(production_model):
    # Registered by ModelopsConfig.ready(); mlcore itself names no reader.
    assert outcomes._reader is outcomes_for_gate
    outcome_reader_register(None)
    try:
        labelled, why = outcomes.outcomes_for_gate(
            candidate_features=["a"], production_features=["a"]
        )
    finally:
        outcome_reader_register(outcomes_for_gate)
    assert labelled is None and "no outcome reader is installed" in why
