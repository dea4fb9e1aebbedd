"""Candidate versus production on the same rows, and the promotion gate's verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlcore.engine import accuracy, evaluation, synthetic, training
from mlcore.engine.errors import DataError
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import DEFAULT_RISK_BANDS, RiskBand


@pytest.fixture(scope="module")
def shuffled_predictor() -> Predictor:
    """A model trained on labels shuffled at random: it has learnt nothing."""
    data = training.synthetic_training_data(3_000, seed=4)
    rng = np.random.default_rng(0)
    data.frame[synthetic.TARGET] = rng.permutation(data.frame[synthetic.TARGET].to_numpy())
    trained = training.train_model(data, seed=4, feature_specs=synthetic.FEATURES)
    return Predictor(trained.pipeline, trained.manifest)


@pytest.fixture(scope="module")
def holdout() -> evaluation.LabelledSet:
    return evaluation.synthetic_holdout(4_000)


def test_the_same_model_on_both_sides_passes_with_identical_numbers(sklearn_predictor, holdout):
    comparison = evaluation.compare(
        sklearn_predictor, sklearn_predictor, [holdout], bands=DEFAULT_RISK_BANDS
    )
    item = comparison.sets[0]
    assert item.n == 4_000 and item.floods == holdout.floods
    assert item.candidate == item.production
    assert item.auc_drop == 0.0
    assert item.candidate.roc_auc > 0.8
    verdict = comparison.gate(0.02, 0.45)
    assert verdict.passed and verdict.reasons == [] and verdict.failures == {}


def test_a_model_that_learnt_nothing_fails_on_roc_auc_and_recall(
    sklearn_predictor, shuffled_predictor, holdout
):
    comparison = evaluation.compare(
        shuffled_predictor, sklearn_predictor, [holdout], bands=DEFAULT_RISK_BANDS
    )
    item = comparison.sets[0]
    assert item.candidate.roc_auc < 0.6 < item.production.roc_auc
    verdict = comparison.gate(0.02, 0.45)
    assert not verdict.passed
    assert set(verdict.failures) == {"roc_auc", "recall_high"}
    assert "ROC-AUC on synthetic held-out fell from" in verdict.failures["roc_auc"]
    assert "allowed 0.02" in verdict.failures["roc_auc"]
    assert "below the minimum 0.45" in verdict.failures["recall_high"]
    # The same pair with thresholds loose enough passes: the settings decide, nothing else.
    assert comparison.gate(1.0, 0.0).passed


def test_recall_high_is_the_share_of_floods_predicted_high_or_severe(sklearn_predictor, holdout):
    p = sklearn_predictor.predict_proba(holdout.matrix_for(sklearn_predictor.feature_names))
    scores = evaluation.score(holdout.y, p, DEFAULT_RISK_BANDS, 0.5)
    floods = holdout.y == 1
    assert scores.recall_high == pytest.approx(np.mean(p[floods] >= 0.5))
    # Consistent with the monitoring report's per-band recall for the band named "high".
    rates = accuracy.band_rates(holdout.y, p, [(b.name, b.lower) for b in DEFAULT_RISK_BANDS])
    by_band = {row["band"]: row["recall"] for row in rates}
    assert scores.recall_high == pytest.approx(by_band["high"])
    assert scores.recall_at_band == by_band


def test_the_high_threshold_comes_from_the_bands():
    assert evaluation.high_threshold(DEFAULT_RISK_BANDS) == 0.5
    custom = [
        RiskBand("calm", 0.0, "", "#000"),
        RiskBand("watch", 0.3, "", "#111"),
        RiskBand("warning", 0.6, "", "#222"),
        RiskBand("danger", 0.9, "", "#333"),
    ]
    assert evaluation.high_threshold(custom) == 0.6  # no band named high: the second-highest
    with pytest.raises(DataError):
        evaluation.high_threshold([RiskBand("all", 0.0, "", "#000")])


def test_models_with_different_feature_orders_see_the_same_rows(sklearn_predictor, holdout):
    class Reordered:
        """The same model behind a reversed feature order."""

        feature_names = list(reversed(sklearn_predictor.feature_names))

        def predict_proba(self, X):
            return sklearn_predictor.predict_proba(X[:, ::-1])

    comparison = evaluation.compare(
        Reordered(), sklearn_predictor, [holdout], bands=DEFAULT_RISK_BANDS
    )
    assert comparison.sets[0].candidate == comparison.sets[0].production


def test_a_set_without_a_models_feature_is_refused_naming_it(sklearn_predictor):
    frame = pd.DataFrame({"rainfall_24h_mm": [1.0, 2.0]})
    labelled = evaluation.LabelledSet(name="partial", frame=frame, y=[0, 1])
    with pytest.raises(DataError) as caught:
        evaluation.compare(
            sklearn_predictor, sklearn_predictor, [labelled], bands=DEFAULT_RISK_BANDS
        )
    assert "rainfall_72h_mm" in caught.value.fields
    with pytest.raises(DataError):
        evaluation.LabelledSet(name="short", frame=frame, y=[1])


def test_one_class_sets_have_no_roc_auc_and_never_fail_on_it(sklearn_predictor, holdout):
    floods_only = holdout.frame[holdout.y == 1].head(50)
    labelled = evaluation.LabelledSet(name="floods", frame=floods_only, y=np.ones(50))
    comparison = evaluation.compare(
        sklearn_predictor, sklearn_predictor, [labelled], bands=DEFAULT_RISK_BANDS
    )
    assert comparison.sets[0].candidate.roc_auc is None
    assert "roc_auc" not in comparison.gate(0.0, 0.0).failures


def test_the_gate_holdout_is_fixed_and_fresh():
    first = evaluation.synthetic_holdout(2_000)
    assert first is evaluation.synthetic_holdout(2_000)  # built once per process
    again = synthetic.generate(2_000, seed=evaluation.GATE_SYNTHETIC_SEED)
    assert np.array_equal(first.y, again[synthetic.TARGET].to_numpy())
    # Not the rows the default model (seed 0) or the test models are trained on.
    trained_on = synthetic.generate(2_000, seed=0)[synthetic.FEATURE_NAMES]
    assert not np.allclose(first.frame.to_numpy(), trained_on.to_numpy())
    assert evaluation.synthetic_covers(synthetic.FEATURE_NAMES[:3], synthetic.FEATURE_NAMES)
    assert not evaluation.synthetic_covers(["soil_ph"])
