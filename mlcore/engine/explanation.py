"""Additive explanations: exact per-feature contributions to a model's log-odds and their baseline.

For every row, ``baseline + sum(contributions) == log_odds(p)`` where ``p`` is the fitted
scikit-learn pipeline's probability and ``baseline`` is the model's expected log-odds over its
training data:

- gradient boosting (HistGradientBoosting) and random forests: exact path-dependent TreeSHAP
  over the fitted trees' own nodes, weighted by how many training rows reached each node;
- logistic regression: ``coef * (standardised x - training mean)``, the training mean of a
  standardised column being zero, so the baseline is the intercept.

A random forest averages probabilities, not log-odds, so its exact TreeSHAP values are on the
probability scale; they are rescaled in proportion to land on the log-odds scale (same signs,
same order, still exact in sum). Preprocessing that keeps one column per feature (median
imputation, scaling) maps shares one to one; preprocessing that encodes a feature into several
columns (a month as its sine and cosine) must name its output columns after their input
(``get_feature_names_out``): each input's share is then the sum of its columns' shares, which
keeps the total exact. Anything else has no explanation rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import factorial

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcore.engine.encoding import FeatureEncoder
from mlcore.engine.onnx_export import PARITY_TOLERANCE

# Probabilities of exactly 0 or 1 (a forest whose leaves are all pure) have no log-odds;
# both sides of the identity clip at the same point.
PROBABILITY_CLIP = 1e-9
# The contributions add up to scikit-learn's log-odds to float rounding; a served ONNX
# probability differs from scikit-learn's by at most the parity tolerance checked at export, so
# sigmoid(baseline + contributions) matches the served probability within this (absolute).
# On the log-odds scale that gap is divided by p (1 - p): large relative to a tiny p.
SERVED_TOLERANCE = PARITY_TOLERANCE

# Rows explained together: each row expands to (leaves x path features) numbers, so a chunk
# of this size stays within about 100 MB for a 300-tree model.
TREE_CHUNK_ROWS = 16


def log_odds(probability: np.ndarray | float) -> np.ndarray:
    """logit(p), with p clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP]."""
    p = np.clip(np.asarray(probability, dtype=np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(value: np.ndarray | float) -> np.ndarray:
    """The inverse of log_odds (without the clip)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(value, dtype=np.float64)))


@dataclass(frozen=True)
class _Leaves:
    """The leaves of a tree ensemble whose paths test the same number d of distinct features.

    Slot ``s`` of leaf ``l`` says: the path tests feature ``feature[l, s]``; a row follows the
    path on that feature when ``lower < x <= upper``; a share ``zero[l, s]`` of the training
    rows that reached the feature's first test went on along the path. Grouping leaves by d
    leaves no padding to compute and mask.
    """

    feature: np.ndarray  # int, leaves x d
    lower: np.ndarray
    upper: np.ndarray
    zero: np.ndarray
    value: np.ndarray  # leaf value, already divided by the number of trees where averaged
    weights: np.ndarray  # Shapley weight of a coalition of k of the d - 1 others: k! (d-k-1)! / d!


def _pack_leaves(
    trees: Sequence[dict[str, np.ndarray]], scale: float
) -> tuple[list[_Leaves], float]:
    """Flatten trees (children, feature, threshold, cover, value arrays) into _Leaves groups.

    Also returns the ensemble's expected output: each tree's leaf values weighted by the
    share of training rows that reached them.
    """
    by_depth: dict[int, list[tuple[dict[int, list[float]], float]]] = {}
    expected = 0.0
    for tree in trees:
        left, right = tree["left"], tree["right"]
        feature, threshold = tree["feature"], tree["threshold"]
        cover, value, is_leaf = tree["cover"], tree["value"], tree["is_leaf"]
        root_cover = float(cover[0])
        # (node, {feature: [lower, upper, zero]}) depth-first; a repeated feature narrows its
        # interval and multiplies its share, as TreeSHAP merges repeated splits.
        stack: list[tuple[int, dict[int, list[float]]]] = [(0, {})]
        while stack:
            node, constraint = stack.pop()
            if is_leaf[node]:
                leaf_value = float(value[node]) * scale
                expected += leaf_value * float(cover[node]) / root_cover
                if constraint:  # a tree that is one leaf moves no feature
                    by_depth.setdefault(len(constraint), []).append((constraint, leaf_value))
                continue
            f = int(feature[node])
            for child, goes_left in ((int(left[node]), True), (int(right[node]), False)):
                lower, upper, zero = constraint.get(f, [-np.inf, np.inf, 1.0])
                cut = float(threshold[node])
                if goes_left:
                    upper = min(upper, cut)
                else:
                    lower = max(lower, cut)
                share = float(cover[child]) / float(cover[node])
                stack.append((child, {**constraint, f: [lower, upper, zero * share]}))
    groups = []
    for depth, paths in sorted(by_depth.items()):
        slots = [sorted(constraint.items()) for constraint, _ in paths]
        bounds = np.array([[bound for _, bound in leaf] for leaf in slots], dtype=np.float64)
        groups.append(
            _Leaves(
                feature=np.array([[f for f, _ in leaf] for leaf in slots], dtype=np.intp),
                lower=bounds[:, :, 0],
                upper=bounds[:, :, 1],
                zero=bounds[:, :, 2],
                value=np.array([leaf_value for _, leaf_value in paths], dtype=np.float64),
                weights=np.array(
                    [
                        factorial(k) * factorial(depth - k - 1) / factorial(depth)
                        for k in range(depth)
                    ]
                ),
            )
        )
    return groups, expected


def _tree_shap(groups: Sequence[_Leaves], matrix: np.ndarray, n_features: int) -> np.ndarray:
    """Exact path-dependent TreeSHAP values (rows x features) of the packed ensemble.

    For a leaf whose path tests d distinct features, feature i's share of the leaf value is
    (o_i - z_i) * sum_k w(k, d) * [t^k] prod_{j != i} (z_j + o_j t), where o_j is 1 when the
    row follows the path on feature j and z_j is the training share that did. The product over
    all j is built once per leaf, then each slot's own factor is divided out.
    """
    rows = matrix.shape[0]
    offsets = (np.arange(rows) * n_features)[:, None, None]
    summed = np.zeros(rows * n_features)
    for group in groups:
        zero = group.zero[None]
        depth = zero.shape[2]
        x = matrix[:, group.feature]  # rows x leaves x d
        followed = (x > group.lower) & (x <= group.upper)
        one = followed.astype(np.float64)
        # poly[..., k]: the coefficient of t^k of prod_j (z_j + o_j t), built factor by factor.
        poly = np.zeros((*one.shape[:2], depth + 1))
        poly[..., 0] = 1.0
        for s in range(depth):
            raised = poly[..., : s + 1] * one[..., s, None]
            poly[..., : s + 1] *= zero[..., s, None]
            poly[..., 1 : s + 2] += raised
        # Where the row leaves the path on feature i its factor is the constant z_i (and the
        # top coefficient is 0): the weighted sum is the whole product's, divided by z_i.
        left_path = (poly[..., :depth] @ group.weights)[..., None] / zero
        # Where it follows, divide by (t + z_i) from the top coefficient down; each step
        # multiplies earlier rounding by z_i <= 1, so the division is stable.
        quotient = np.repeat(poly[..., depth, None], depth, axis=2)
        weighted = quotient * group.weights[depth - 1]
        for k in range(depth - 1, 0, -1):
            quotient = poly[..., k, None] - zero * quotient
            weighted += quotient * group.weights[k - 1]
        phi = np.where(followed, weighted, left_path) * (one - zero) * group.value[:, None]
        index = (offsets + group.feature[None]).ravel()
        summed += np.bincount(index, weights=phi.ravel(), minlength=rows * n_features)
    return summed.reshape(rows, n_features)


def _hgb_trees(model: HistGradientBoostingClassifier) -> list[dict[str, np.ndarray]]:
    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if np.any(nodes["is_categorical"][nodes["is_leaf"] == 0]):
            raise ValueError("categorical splits are not explained")
        trees.append(
            {
                "left": nodes["left"],
                "right": nodes["right"],
                "feature": nodes["feature_idx"],
                "threshold": nodes["num_threshold"],
                "cover": nodes["count"].astype(np.float64),
                "value": nodes["value"],
                "is_leaf": nodes["is_leaf"].astype(bool),
            }
        )
    return trees


def _forest_trees(model: RandomForestClassifier) -> list[dict[str, np.ndarray]]:
    trees = []
    for estimator in model.estimators_:
        tree = estimator.tree_
        counts = tree.value[:, 0, :]
        trees.append(
            {
                "left": tree.children_left,
                "right": tree.children_right,
                "feature": tree.feature,
                "threshold": tree.threshold,
                "cover": tree.weighted_n_node_samples,
                # The probability of class 1 at each node, as predict_proba reads it.
                "value": counts[:, 1] / counts.sum(axis=1),
                "is_leaf": tree.children_left == -1,
            }
        )
    return trees


class Explainer:
    """Contributions of each feature to one fitted pipeline's log-odds, for rows of raw inputs.

    Build it once per model (``explainer_for``); ``baseline`` is the expected log-odds over
    the training data, and ``contributions(X)`` returns rows x features on the log-odds scale.
    """

    def __init__(
        self, pipeline: Pipeline, n_features: int, *, feature_names: Sequence[str] = ()
    ) -> None:
        self.n_features = n_features
        self._prepare = Pipeline(pipeline.steps[:-1]) if len(pipeline.steps) > 1 else None
        self._plain_steps = _plain_steps(pipeline.steps[:-1])
        model = pipeline.steps[-1][1]
        # Columns the model sees, and (when the preprocessing widens the data) which input
        # each one came from, as a one-hot columns x features matrix.
        self._width = int(getattr(model, "n_features_in_", n_features))
        self._owners: np.ndarray | None = None
        if self._width != n_features:
            self._owners = _column_owners(self._prepare, feature_names, self._width)
        self.kind: str
        self._leaves: list[_Leaves] = []
        if isinstance(model, HistGradientBoostingClassifier):
            if model.n_trees_per_iteration_ != 1:
                raise ValueError("only binary gradient boosting is explained")
            self.kind = "tree_shap"
            self._leaves, expected = _pack_leaves(_hgb_trees(model), 1.0)
            self.baseline = float(np.ravel(model._baseline_prediction)[0]) + expected
            self._on_probability = False
        elif isinstance(model, RandomForestClassifier):
            if len(model.classes_) != 2:
                raise ValueError("only binary forests are explained")
            self.kind = "tree_shap"
            trees = _forest_trees(model)
            self._leaves, expected = _pack_leaves(trees, 1.0 / len(trees))
            self._expected_probability = expected
            self.baseline = float(log_odds(expected))
            self._on_probability = True
        elif isinstance(model, LogisticRegression):
            if model.coef_.shape[0] != 1:
                raise ValueError("only binary logistic regression is explained")
            self.kind = "linear"
            self._coef = np.asarray(model.coef_[0], dtype=np.float64)
            self.baseline = float(model.intercept_[0])
        else:
            raise ValueError(f"{type(model).__name__} has no additive explanation")
        self._is_forest = isinstance(model, RandomForestClassifier)

    def _model_space(self, matrix: np.ndarray) -> np.ndarray:
        if self._plain_steps is not None:
            prepared = matrix
            for fill, centre, scale, encoder in self._plain_steps:
                if fill is not None:
                    prepared = np.where(np.isnan(prepared), fill, prepared)
                elif centre is not None and scale is not None:
                    prepared = (prepared - centre) / scale
                elif encoder is not None:
                    prepared = encoder.transform(prepared)
        else:
            assert self._prepare is not None
            prepared = self._prepare.transform(matrix)
        prepared = np.asarray(prepared, dtype=np.float64)
        if prepared.shape[1] != self._width:
            raise ValueError("the preprocessing gave another number of columns than at fitting")
        if self._is_forest:
            # sklearn's trees compare float32 inputs with their thresholds.
            prepared = prepared.astype(np.float32).astype(np.float64)
        return prepared

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-feature log-odds contributions; each row sums to log_odds(p) - baseline."""
        phi = self._column_contributions(self._model_space(np.asarray(matrix, dtype=np.float64)))
        return phi if self._owners is None else phi @ self._owners

    def _column_contributions(self, prepared: np.ndarray) -> np.ndarray:
        if self.kind == "linear":
            return prepared * self._coef
        phi = np.concatenate(
            [
                _tree_shap(self._leaves, prepared[start : start + TREE_CHUNK_ROWS], self._width)
                for start in range(0, prepared.shape[0], TREE_CHUNK_ROWS)
            ]
        )
        if not self._on_probability:
            return phi
        # Forest: exact on the probability scale; carry each row onto the log-odds scale in
        # proportion, so the sum is the log-odds gap and every share keeps its sign and size.
        base = self._expected_probability
        probability = base + phi.sum(axis=1)
        gap = probability - base
        log_gap = log_odds(probability) - self.baseline
        near = np.abs(gap) < 1e-12
        slope = np.where(near, 1.0 / (base * (1.0 - base)), log_gap / np.where(near, 1.0, gap))
        return phi * slope[:, None]


_PlainStep = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, FeatureEncoder | None]


def _plain_steps(steps: Sequence[tuple[str, object]]) -> list[_PlainStep] | None:
    """Median imputation and scaling as plain arrays, the feature encoder as it is (its
    transform is plain numpy), or None for any other preprocessing.

    scikit-learn's transform validates its input on every call, which costs more than the
    TreeSHAP of a small model; these steps are simple enough to apply directly.
    """
    plain: list[_PlainStep] = []
    for _, step in steps:
        if isinstance(step, FeatureEncoder):
            plain.append((None, None, None, step))
        elif isinstance(step, SimpleImputer):
            missing = step.missing_values
            if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
                return None
            fill = np.asarray(step.statistics_, dtype=np.float64)
            plain.append((fill, None, None, None))
        elif isinstance(step, StandardScaler):
            n = int(step.n_features_in_)
            centre = step.mean_ if step.with_mean and step.mean_ is not None else np.zeros(n)
            scale = step.scale_ if step.with_std and step.scale_ is not None else np.ones(n)
            centre, scale = np.asarray(centre, np.float64), np.asarray(scale, np.float64)
            plain.append((None, centre, scale, None))
        else:
            return None
    return plain


def _column_owners(
    prepare: Pipeline | None, feature_names: Sequence[str], width: int
) -> np.ndarray:
    """One-hot (model columns x features): the input feature each model column was made from.

    Read from the preprocessing's output names: a column belongs to the longest feature name
    it contains ("month" in "cyclic__month_sin"), so "rainfall_24h_mm" is never taken for a
    shorter name it happens to contain.
    """
    if prepare is None or not feature_names:
        raise ValueError("the model sees other columns than its features, and they are unnamed")
    try:
        names_out = [str(name) for name in prepare.get_feature_names_out(list(feature_names))]
    except (AttributeError, ValueError, TypeError) as exc:
        raise ValueError(f"the preprocessing does not name its columns: {exc}") from exc
    if len(names_out) != width:
        raise ValueError("the preprocessing names another number of columns than the model sees")
    owners = np.zeros((width, len(feature_names)))
    for column, name_out in enumerate(names_out):
        matches = [j for j, name in enumerate(feature_names) if name in name_out]
        if not matches:
            raise ValueError(f"model column {name_out!r} names none of the features")
        owners[column, max(matches, key=lambda j: len(feature_names[j]))] = 1.0
    return owners


def explainer_for(
    pipeline: Pipeline, n_features: int, *, feature_names: Sequence[str] = ()
) -> Explainer | None:
    """The pipeline's Explainer, or None when its model or preprocessing has none."""
    try:
        return Explainer(pipeline, n_features, feature_names=feature_names)
    except ValueError:
        return None
