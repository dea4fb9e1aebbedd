"""Scoring validated inputs: probabilities, risk bands, out-of-range flags and explanations."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from mlcore.engine.calibration import Calibration
from mlcore.engine.errors import SchemaError
from mlcore.engine.explanation import Explainer, explainer_for, log_odds, sigmoid
from mlcore.engine.onnx_export import OnnxSession
from mlcore.engine.schema import Manifest

# Explanations are computed (see explanation.TREE_CHUNK_ROWS for their own chunks) and turned
# into per-row objects this many rows at a time.
EXPLAIN_CHUNK_ROWS = 2_000
SCORE_CHUNK_ROWS = 50_000


@dataclass
class Factor:
    """One input's exact share of the gap between the answer and the model's baseline.

    ``contribution`` is on the log-odds scale (the shares and the baseline add up to the
    answer's log-odds); ``points`` is the probability view: the change in probability as the
    factors are added in order of size, from the baseline's probability to the answer.
    """

    feature: str
    value: float
    contribution: float
    direction: str
    points: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies and costs more than the explanation itself.
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "points": self.points,
            "direction": self.direction,
        }


@dataclass
class Prediction:
    """One scored site: probability of flooding, its band, and why."""

    probability: float
    label: str
    risk_band: str
    out_of_range: list[str] = field(default_factory=list)
    factors: list[Factor] = field(default_factory=list)
    # The model's expected log-odds over its training data; None when not explained.
    baseline: float | None = None
    # A calibrated model's map moves the model's log-odds by this much (explained rows only).
    calibration: float | None = None

    def explanation_dict(self) -> dict[str, Any]:
        """What the audit row stores: the baseline and every factor, or {} when not explained."""
        if self.baseline is None:
            return {}
        explained: dict[str, Any] = {
            "baseline": self.baseline,
            "baseline_probability": float(sigmoid(self.baseline)),
            "factors": [factor.to_dict() for factor in self.factors],
        }
        if self.calibration is not None:
            explained["calibration"] = self.calibration
        return explained

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "label": self.label,
            "risk_band": self.risk_band,
            "out_of_range": list(self.out_of_range),
            "factors": [factor.to_dict() for factor in self.factors],
            "baseline": self.baseline,
            "calibration": self.calibration,
        }


class Predictor:
    """Scores rows already in schema order (see schema.validate_inputs) with one model version.

    Everything that does not depend on the request (ranges, band thresholds) is computed once
    here, so a single prediction is little more than one backend call; the explainer is built
    the first time an explanation is asked for.
    """

    def __init__(
        self, pipeline: Pipeline, manifest: Manifest, *, onnx_bytes: bytes | None = None
    ) -> None:
        self.pipeline = pipeline
        self.manifest = manifest
        self.feature_names = manifest.feature_names
        self.n_features = len(self.feature_names)
        self._session = OnnxSession(onnx_bytes) if onnx_bytes else None
        self.backend = "onnx" if self._session is not None else "sklearn"
        self.calibration = Calibration.from_dict(manifest.calibration)
        # The map is applied here unless the ONNX graph already ends with it.
        self._calibrate = self.calibration is not None and (
            self._session is None or self._session.calibration is None
        )

        specs = manifest.features
        self._minimum = np.array([spec.minimum for spec in specs], dtype=np.float64)
        self._maximum = np.array([spec.maximum for spec in specs], dtype=np.float64)
        self._band_lowers = [float(band.lower) for band in manifest.risk_bands]
        self._band_names = [band.name for band in manifest.risk_bands]
        self._negative, self._positive = manifest.class_labels
        self._explainer_built = False
        self._explainer_value: Explainer | None = None

    @property
    def explainer(self) -> Explainer | None:
        """The model's Explainer, built on first use: serving without explanations never pays."""
        if not self._explainer_built:
            self._explainer_value = explainer_for(
                self.pipeline, self.n_features, feature_names=self.feature_names
            )
            self._explainer_built = True
        return self._explainer_value

    def _as_matrix(self, X: np.ndarray) -> np.ndarray:
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise SchemaError(
                f"expected rows of {self.n_features} values in schema order, got shape "
                f"{matrix.shape}",
                fields={"inputs": "wrong shape"},
            )
        finite = np.isfinite(matrix)
        if not finite.all():
            bad = [self.feature_names[j] for j in np.flatnonzero(~finite.all(axis=0))]
            raise SchemaError(
                f"non-finite values for {', '.join(bad)}",
                fields={name: "must be a finite number" for name in bad},
            )
        return matrix

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        if self._session is not None:
            probability = self._session.positive_probability(matrix)
        else:
            probability = self.pipeline.predict_proba(matrix)[:, 1]
        if self._calibrate:
            assert self.calibration is not None
            probability = self.calibration.apply(probability)
        # float32 backends can overshoot by an ulp; a probability must stay within [0, 1].
        return np.clip(probability, 0.0, 1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(flood) for each row of X."""
        matrix = self._as_matrix(X)
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return np.concatenate(
            [
                self._score(matrix[start : start + SCORE_CHUNK_ROWS])
                for start in range(0, matrix.shape[0], SCORE_CHUNK_ROWS)
            ]
        )

    def _assemble(
        self,
        values: np.ndarray,
        probability: float,
        contributions: np.ndarray | None,
        top_k: int | None,
    ) -> Prediction:
        band = bisect.bisect_right(self._band_lowers, probability) - 1
        outside = np.flatnonzero((values < self._minimum) | (values > self._maximum)).tolist()
        factors: list[Factor] = []
        baseline = calibration = None
        explainer = self._explainer_value
        if contributions is not None and explainer is not None:
            baseline = explainer.baseline
            # Plain Python numbers from here: indexing numpy arrays one element at a time
            # makes a numpy scalar per access.
            order = np.argsort(-np.abs(contributions), kind="stable")[:top_k].tolist()
            changes = contributions.tolist()
            inputs = values.tolist()
            running = baseline
            before = float(sigmoid(running))
            for j in order:
                change = changes[j]
                if change == 0.0:
                    # Sorted by size, so every remaining feature made no difference either.
                    break
                running += change
                after = float(sigmoid(running))
                factors.append(
                    Factor(
                        feature=self.feature_names[j],
                        value=inputs[j],
                        contribution=change,
                        direction="raises" if change > 0 else "lowers",
                        points=after - before,
                    )
                )
                before = after
            if self.calibration is not None:
                # The factors add up to the model's log-odds; the map takes it to the answer.
                model_log_odds = baseline + float(np.sum(contributions))
                calibration = float(log_odds(probability)) - model_log_odds
        return Prediction(
            probability=float(probability),
            label=self._positive if probability >= 0.5 else self._negative,
            risk_band=self._band_names[max(band, 0)],
            out_of_range=[self.feature_names[j] for j in outside],
            factors=factors,
            baseline=baseline,
            calibration=calibration,
        )

    def _contributions(self, matrix: np.ndarray) -> np.ndarray | None:
        explainer = self.explainer
        return None if explainer is None else explainer.contributions(matrix)

    def predict_one(
        self, values: np.ndarray, *, explain: bool = True, top_k: int | None = None
    ) -> Prediction:
        """Score one row of values in schema order, with its exact explanation when asked.

        ``top_k`` keeps only the largest factors; without it every factor is kept, so the
        factors and the baseline add up to the answer.
        """
        matrix = self._as_matrix(values)
        if matrix.shape[0] != 1:
            raise SchemaError("predict_one takes exactly one row", fields={"inputs": "many rows"})
        probability = self._score(matrix)
        contributions = self._contributions(matrix) if explain else None
        return self._assemble(
            matrix[0], probability[0], None if contributions is None else contributions[0], top_k
        )

    def predict_many(
        self, X: np.ndarray, *, explain: bool = True, top_k: int | None = None
    ) -> list[Prediction]:
        """Score (and optionally explain) many rows; results are identical to predict_one."""
        matrix = self._as_matrix(X)
        results: list[Prediction] = []
        if not explain:
            probability = self.predict_proba(matrix)
            return [
                self._assemble(row, p, None, 0) for row, p in zip(matrix, probability, strict=True)
            ]
        for start in range(0, matrix.shape[0], EXPLAIN_CHUNK_ROWS):
            chunk = matrix[start : start + EXPLAIN_CHUNK_ROWS]
            probability = self.predict_proba(chunk)
            contributions = self._contributions(chunk)
            results.extend(
                self._assemble(
                    chunk[i],
                    probability[i],
                    None if contributions is None else contributions[i],
                    top_k,
                )
                for i in range(chunk.shape[0])
            )
        return results


@dataclass
class BatchScores:
    """Vectorised outputs for many rows: what a batch writes, without per-row objects."""

    probability: np.ndarray
    label: np.ndarray
    risk_band: np.ndarray
    out_of_range: np.ndarray  # bool, rows x features


def score_batch(predictor: Predictor, X: np.ndarray) -> BatchScores:
    """Probability, label, band and out-of-range flags for every row, in a few numpy calls.

    Batches skip explanations: they would multiply the scoring work by the number of features,
    and a batch row's explanation can be computed later from its stored inputs.
    """
    matrix = predictor._as_matrix(X)
    probability = predictor.predict_proba(matrix)
    band_index = np.searchsorted(predictor._band_lowers, probability, side="right") - 1
    bands = np.array(predictor._band_names, dtype=object)[np.clip(band_index, 0, None)]
    labels = np.where(probability >= 0.5, predictor._positive, predictor._negative).astype(object)
    outside = (matrix < predictor._minimum) | (matrix > predictor._maximum)
    return BatchScores(probability=probability, label=labels, risk_band=bands, out_of_range=outside)
