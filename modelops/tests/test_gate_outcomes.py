"""The promotion gate reads recorded outcomes through this app's reader (modelops.outcomes)."""

from __future__ import annotations

from mlcore import outcomes
from mlcore.engine import synthetic
from mlcore.models import Stage, StageChange
from mlcore.outcomes import outcome_reader_register
from mlcore.services import model_version_promote
from mlcore.tests.factories import ModelVersionFactory, other_good_prepared
from modelops.outcomes import outcomes_for_gate
from predictions.services import outcome_create, prediction_create


def test_recorded_outcomes_join_the_comparison_once_there_are_enough(
    production_model, user, settings
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
    candidate = ModelVersionFactory(prepared=other_good_prepared())
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
