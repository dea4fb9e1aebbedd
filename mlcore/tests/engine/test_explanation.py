"""Tests for additive explanations: exact contributions that add up to the model's log-odds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import combinations
from math import factorial

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlcore.engine import explanation, synthetic, training
from mlcore.engine.explanation import Explainer, log_odds
from mlcore.engine.inference import Predictor
from mlcore.engine.onnx_export import convert_to_onnx


@dataclass
class Fitted:
    algorithm: str
    pipeline: Pipeline
    rows: np.ndarray


@pytest.fixture(scope="module", params=["hgb", "random_forest", "logistic"])
def fitted(request) -> Fitted:
    # Fitted directly (not through train_model) so these tests time the explanation only.
    frame = synthetic.generate(1_500, seed=11)
    X = frame[[spec.name for spec in synthetic.FEATURES]].to_numpy(dtype=np.float64)
    y = frame[synthetic.TARGET].to_numpy()
    pipeline = training.build_pipeline(request.param, seed=11)
    if request.param == "hgb":
        # 60 of its 300 rounds: still many trees of 31 leaves, at a fifth of the fitting time.
        pipeline.set_params(model__max_iter=60)
    pipeline.fit(X[:1_200], y[:1_200])
    return Fitted(request.param, pipeline, X[1_200:])


def test_contributions_add_up_to_the_log_odds_for_every_algorithm(fitted) -> None:
    explainer = Explainer(fitted.pipeline, fitted.rows.shape[1])
    rng = np.random.default_rng(5)
    rows = fitted.rows[rng.choice(len(fitted.rows), size=25, replace=False)]
    # Blanks go through the pipeline's own median imputation, as in training.
    rows[:5, [0, 3]] = np.nan

    contributions = explainer.contributions(rows)

    probability = fitted.pipeline.predict_proba(rows)[:, 1]
    gap = explainer.baseline + contributions.sum(axis=1) - log_odds(probability)
    assert np.max(np.abs(gap)) < 1e-6
    # Not a trivial split of the gap: several inputs carry a share of it.
    assert np.median((np.abs(contributions) > 1e-9).sum(axis=1)) >= 3


@pytest.mark.parametrize("kind", ["hgb", "random_forest", "logistic"])
def test_the_baseline_is_the_mean_log_odds_over_the_training_rows(kind) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] - X[:, 2] + rng.normal(size=600) > 0).astype(int)
    pipeline = training.build_pipeline(kind, seed=0)
    model = pipeline.steps[-1][1]
    # Every training row grows every tree, so the covers are exactly the training rows.
    if kind == "hgb":
        model.set_params(early_stopping=False, max_iter=20)
    elif kind == "random_forest":
        model.set_params(bootstrap=False, max_features=None, n_estimators=5)
    pipeline.fit(X, y)

    explainer = Explainer(pipeline, 3)

    if kind == "random_forest":
        # A forest averages probabilities: its baseline is the log-odds of the mean one.
        expected = log_odds(pipeline.predict_proba(X)[:, 1].mean())
    else:
        expected = np.mean(log_odds(pipeline.predict_proba(X)[:, 1]))
    assert explainer.baseline == pytest.approx(float(expected), abs=1e-6)


def _tree_game(tree: dict[str, np.ndarray], x: np.ndarray, known: set[int]) -> float:
    """E[tree(x) | the features in ``known``], following x on those and covers elsewhere."""

    def walk(node: int) -> float:
        if tree["is_leaf"][node]:
            return float(tree["value"][node])
        left, right = int(tree["left"][node]), int(tree["right"][node])
        feature = int(tree["feature"][node])
        if feature in known:
            return walk(left if x[feature] <= tree["threshold"][node] else right)
        cover = tree["cover"]
        return (cover[left] * walk(left) + cover[right] * walk(right)) / cover[node]

    return walk(0)


def _brute_force_shapley(trees, x: np.ndarray, n: int) -> np.ndarray:
    def game(known: set[int]) -> float:
        return sum(_tree_game(tree, x, known) for tree in trees)

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = factorial(size) * factorial(n - size - 1) / factorial(n)
            for subset in combinations(others, size):
                known = set(subset)
                phi[i] += weight * (game(known | {i}) - game(known))
    return phi


@pytest.mark.parametrize("kind", ["hgb", "random_forest"])
def test_tree_contributions_are_the_exact_shapley_values_of_the_trees(kind) -> None:
    # Additivity alone would hold for any split of the gap; this checks every share against
    # the Shapley formula over all coalitions of a small model's features.
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * rng.normal(size=400) > 0).astype(int)
    if kind == "hgb":
        model = HistGradientBoostingClassifier(max_iter=5, max_leaf_nodes=8, random_state=0)
        trees = explanation._hgb_trees(model.fit(X, y))
    else:
        model = RandomForestClassifier(n_estimators=3, max_depth=5, random_state=0)
        trees = explanation._forest_trees(model.fit(X, y))
    leaves, _ = explanation._pack_leaves(trees, 1.0)

    for x in X[:5]:
        probe = x.astype(np.float32).astype(np.float64) if kind == "random_forest" else x
        exact = _brute_force_shapley(trees, probe, 4)
        fast = explanation._tree_shap(leaves, probe[None, :], 4)[0]
        assert fast == pytest.approx(exact, abs=1e-10)


def test_served_probability_and_contributions_agree_within_the_stated_tolerance(
    fitted, manifest
) -> None:
    n_features = fitted.rows.shape[1]
    predictor = Predictor(
        fitted.pipeline,
        dataclasses.replace(manifest, algorithm=fitted.algorithm),
        onnx_bytes=convert_to_onnx(fitted.pipeline, n_features),
    )
    for row in fitted.rows[:20]:
        served = predictor.predict_one(row)
        assert served.baseline is not None
        total = served.baseline + sum(factor.contribution for factor in served.factors)
        assert abs(explanation.sigmoid(total) - served.probability) < explanation.SERVED_TOLERANCE
        # The probability view walks from the baseline's probability to the same answer.
        walked = explanation.sigmoid(served.baseline) + sum(f.points for f in served.factors)
        assert abs(walked - served.probability) < explanation.SERVED_TOLERANCE


def _month_as_circle(X: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * (np.asarray(X, dtype=np.float64) - 1) / 12
    return np.hstack([np.sin(angle), np.cos(angle)])


@pytest.mark.parametrize("kind", ["hgb", "random_forest", "logistic"])
def test_a_feature_encoded_into_several_columns_gets_one_share(kind) -> None:
    # A month encoded as sine and cosine inside the pipeline: the page still lists "month"
    # once, and the shares still add up.
    rng = np.random.default_rng(8)
    month = rng.integers(1, 13, size=800)
    rain = rng.gamma(2.0, 20.0, size=800)
    X = np.column_stack([rain, month]).astype(np.float64)
    y = (rain / 40 + np.cos(2 * np.pi * (month - 1) / 12) + rng.normal(size=800) > 1).astype(int)
    encode = ColumnTransformer(
        [
            (
                "cyclic",
                FunctionTransformer(
                    _month_as_circle,
                    feature_names_out=lambda _, names: [f"{names[0]}_sin", f"{names[0]}_cos"],
                ),
                [1],
            )
        ],
        remainder="passthrough",
    )
    pipeline = training.build_pipeline(kind, seed=0)
    pipeline.steps.insert(0, ("encode", encode))
    if kind == "hgb":
        pipeline.set_params(model__max_iter=20)
    pipeline.fit(X, y)

    explainer = Explainer(pipeline, 2, feature_names=["rain_mm", "month"])
    contributions = explainer.contributions(X[:30])

    assert contributions.shape == (30, 2)
    gap = (
        explainer.baseline
        + contributions.sum(axis=1)
        - log_odds(pipeline.predict_proba(X[:30])[:, 1])
    )
    assert np.max(np.abs(gap)) < 1e-6
    assert np.any(np.abs(contributions[:, 1]) > 1e-3)
    # Without names to map the columns back there is no explanation rather than a wrong one.
    assert explanation.explainer_for(pipeline, 2) is None
