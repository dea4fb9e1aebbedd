"""Scoring validated inputs: probabilities, risk bands, out-of-range flags and explanations."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from mlcore.engine.errors import SchemaError
from mlcore.engine.onnx_export import OnnxSession
from mlcore.engine.schema import Manifest

# Explaining a row scores n_features + 1 copies of it; 2,000 rows of 16 features is about
# 34,000 scored rows (a few MB) per call, which keeps memory flat for any batch size.
EXPLAIN_CHUNK_ROWS = 2_000
SCORE_CHUNK_ROWS = 50_000


@dataclass
class Factor:
    """How much one input moved the probability compared with its typical (median) value."""

    feature: str
    value: float
    contribution: float
    direction: str

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies and costs more than the explanation itself.
        return {
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "label": self.label,
            "risk_band": self.risk_band,
            "out_of_range": list(self.out_of_range),
            "factors": [factor.to_dict() for factor in self.factors],
        }


class Predictor:
    """Scores rows already in schema order (see schema.validate_inputs) with one model version.

    Everything that does not depend on the request (medians, ranges, band thresholds, the
    index pattern used for explanations) is computed once here, so a single prediction is
    little more than one backend call.
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

        specs = manifest.features
        self._minimum = np.array([spec.minimum for spec in specs], dtype=np.float64)
        self._maximum = np.array([spec.maximum for spec in specs], dtype=np.float64)
        self._medians = np.array(
            [self._median(spec.name, spec.default) for spec in specs], dtype=np.float64
        )
        self._band_lowers = [float(band.lower) for band in manifest.risk_bands]
        self._band_names = [band.name for band in manifest.risk_bands]
        self._negative, self._positive = manifest.class_labels
        # Row 0 of an explanation block is the input itself; row j + 1 has feature j swapped
        # for its median. Flat positions let one assignment do every swap of every row.
        n = self.n_features
        self._swap_positions = np.arange(1, n + 1) * n + np.arange(n)

    def _median(self, name: str, fallback: float) -> float:
        entry = self.manifest.reference.get(name)
        if isinstance(entry, dict) and entry.get("median") is not None:
            return float(entry["median"])
        return float(fallback)

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

    def _explain_block(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and per-feature contributions (actual minus median-substituted)."""
        rows, n = matrix.shape
        block = np.empty((rows, n + 1, n), dtype=np.float64)
        block[:] = matrix[:, None, :]
        block.reshape(rows, (n + 1) * n)[:, self._swap_positions] = self._medians
        scores = self._score(block.reshape(rows * (n + 1), n)).reshape(rows, n + 1)
        probability = scores[:, 0]
        return probability, probability[:, None] - scores[:, 1:]

    def _assemble(
        self,
        values: np.ndarray,
        probability: float,
        contributions: np.ndarray | None,
        top_k: int,
    ) -> Prediction:
        band = bisect.bisect_right(self._band_lowers, probability) - 1
        outside = np.flatnonzero((values < self._minimum) | (values > self._maximum)).tolist()
        factors: list[Factor] = []
        if contributions is not None and top_k > 0:
            # Plain Python numbers from here: indexing numpy arrays one element at a time
            # makes a numpy scalar per access.
            order = np.argsort(-np.abs(contributions), kind="stable")[:top_k].tolist()
            changes = contributions.tolist()
            inputs = values.tolist()
            for j in order:
                change = changes[j]
                if change == 0.0:
                    # Sorted by size, so every remaining feature made no difference either.
                    break
                factors.append(
                    Factor(
                        feature=self.feature_names[j],
                        value=inputs[j],
                        contribution=change,
                        direction="raises" if change > 0 else "lowers",
                    )
                )
        return Prediction(
            probability=float(probability),
            label=self._positive if probability >= 0.5 else self._negative,
            risk_band=self._band_names[max(band, 0)],
            out_of_range=[self.feature_names[j] for j in outside],
            factors=factors,
        )

    def predict_one(self, values: np.ndarray, *, top_k: int = 5) -> Prediction:
        """Score and explain one row of values in schema order."""
        matrix = self._as_matrix(values)
        if matrix.shape[0] != 1:
            raise SchemaError("predict_one takes exactly one row", fields={"inputs": "many rows"})
        probability, contributions = self._explain_block(matrix)
        return self._assemble(matrix[0], probability[0], contributions[0], top_k)

    def predict_many(
        self, X: np.ndarray, *, explain: bool = True, top_k: int = 5
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
            probability, contributions = self._explain_block(chunk)
            results.extend(
                self._assemble(chunk[i], probability[i], contributions[i], top_k)
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
