"""Side-by-side evaluation of a candidate and the production model on the same labelled rows.

The promotion gate and retraining both ask one question: on data neither model chose, is the
candidate at least as good as what serves today? Both models score exactly the same rows;
each takes its own feature columns from a shared frame, so two versions with different
feature orders (or a candidate with fewer features) are still compared fairly.

Definitions (consistent with ``accuracy.band_rates`` and ``training.evaluate``):

* ROC-AUC and Brier score over all rows of a set.
* Recall at a band: among rows that truly flooded, the share whose predicted probability is
  at or above that band's lower bound, i.e. predicted in that band *or a higher one*.
* "Recall in the high and severe bands" (``recall_high``) is the recall at the band named
  ``high``: the share of real floods the model put in band high or above (high + severe with
  the default bands). A manifest without a band named ``high`` uses its second-highest band.
  Both models are measured at the candidate's threshold so the two numbers are comparable.

The gate fails a set when the candidate's ROC-AUC is more than ``max_auc_drop`` below
production's, or when the candidate's ``recall_high`` is below ``min_recall_high``. A
comparison with several sets (synthetic held-out rows, recorded outcomes) passes only if
every set passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from mlcore.engine import accuracy, synthetic
from mlcore.engine.assessment import FEW_OUTPUTS
from mlcore.engine.errors import DataError
from mlcore.engine.schema import RiskBand

# The gate's synthetic held-out rows come from the documented generator with this seed. No
# model is trained on it by the project's commands (training uses seed 0 by default, tests
# small seeds), and seeds index separate random streams, so these rows are fresh for every
# model trained on generated data. Changing it changes every recorded gate comparison.
GATE_SYNTHETIC_SEED = 8_675_309
GATE_SYNTHETIC_ROWS = 20_000
HIGH_BAND = "high"


class Scorer(Protocol):
    """What the comparison needs of a model: its feature order and P(flood) per row."""

    feature_names: list[str]

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class LabelledSet:
    """Rows with known outcomes: a frame holding (at least) every feature both models use."""

    name: str
    frame: pd.DataFrame
    y: np.ndarray
    description: str = ""

    def __post_init__(self) -> None:
        self.y = np.asarray(self.y, dtype=np.int64).ravel()
        if len(self.frame) != len(self.y):
            raise DataError(
                f"{self.name}: {len(self.frame)} rows but {len(self.y)} labels",
                fields={"y": "length differs from the rows"},
            )

    @property
    def floods(self) -> int:
        return int((self.y == 1).sum())

    @property
    def non_floods(self) -> int:
        return int((self.y == 0).sum())

    def matrix_for(self, feature_names: Sequence[str]) -> np.ndarray:
        missing = [name for name in feature_names if name not in self.frame.columns]
        if missing:
            raise DataError(
                f"{self.name}: no column for {', '.join(missing)}",
                fields={name: "missing column" for name in missing},
            )
        return self.frame[list(feature_names)].to_numpy(dtype=np.float64)


@dataclass
class ModelScores:
    """One model's numbers on one set."""

    roc_auc: float | None
    brier: float
    recall_high: float | None
    recall_at_band: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "roc_auc": self.roc_auc,
            "brier": self.brier,
            "recall_high": self.recall_high,
            "recall_at_band": dict(self.recall_at_band),
        }


@dataclass
class SetComparison:
    """Candidate and production on one labelled set."""

    name: str
    description: str
    n: int
    floods: int
    candidate: ModelScores
    production: ModelScores

    @property
    def auc_drop(self) -> float | None:
        if self.candidate.roc_auc is None or self.production.roc_auc is None:
            return None
        return self.production.roc_auc - self.candidate.roc_auc

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "n": self.n,
            "floods": self.floods,
            "candidate": self.candidate.to_dict(),
            "production": self.production.to_dict(),
            "auc_drop": self.auc_drop,
        }


@dataclass
class GateResult:
    """Pass or fail, with one reason per failed check and the metric each one concerns."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    # metric name ("roc_auc", "recall_high") -> reason, for the error's ``fields``
    failures: dict[str, str] = field(default_factory=dict)
    max_auc_drop: float = 0.0
    min_recall_high: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "failures": dict(self.failures),
            "max_auc_drop": self.max_auc_drop,
            "min_recall_high": self.min_recall_high,
        }


@dataclass
class Comparison:
    """Candidate versus production on every available labelled set, and why each set that
    could not be used was left out (``unavailable``: "<set>: <reason>")."""

    high_threshold: float
    sets: list[SetComparison]
    unavailable: list[str] = field(default_factory=list)

    def gate(self, max_auc_drop: float, min_recall_high: float) -> GateResult:
        """Fail when, on any set, ROC-AUC dropped by more than ``max_auc_drop`` or the
        candidate's recall in the high and severe bands is below ``min_recall_high``."""
        result = GateResult(
            passed=True, max_auc_drop=float(max_auc_drop), min_recall_high=float(min_recall_high)
        )
        for item in self.sets:
            drop = item.auc_drop
            if drop is not None and drop > max_auc_drop:
                reason = (
                    f"ROC-AUC on {item.name} fell from {item.production.roc_auc:.3f} to "
                    f"{item.candidate.roc_auc:.3f} (drop {drop:.3f}, allowed {max_auc_drop:g})"
                )
                result.reasons.append(reason)
                result.failures.setdefault("roc_auc", reason)
            recall = item.candidate.recall_high
            if recall is not None and recall < min_recall_high:
                reason = (
                    f"recall in the high and severe bands on {item.name} is {recall:.3f} "
                    f"(production {_fmt(item.production.recall_high)}), below the minimum "
                    f"{min_recall_high:g}"
                )
                result.reasons.append(reason)
                result.failures.setdefault("recall_high", reason)
        result.passed = not result.reasons
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "high_threshold": self.high_threshold,
            "sets": [item.to_dict() for item in self.sets],
            "unavailable": list(self.unavailable),
        }


def own_evaluation_check(evaluation: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What the candidate's own training-time evaluation says: (reasons to refuse, notes).

    A failed leakage check refuses (a column that alone separates the classes, or a model with
    a handful of outputs, makes every other number on the page untrustworthy); the rest of the
    evaluation's warnings (small test set, a policy that moved prevalence, a lenient split)
    are carried into the gate's record as notes. Versions trained before evaluations were
    recorded have nothing to check.
    """
    leakage = evaluation.get("leakage") or {}
    reasons = []
    if leakage and not leakage.get("passed", True):
        found = [
            f"{name} alone reaches ROC-AUC {auc:.3f}"
            for name, auc in (leakage.get("separating_columns") or {}).items()
        ]
        outputs = leakage.get("distinct_outputs")
        if outputs is not None and outputs <= FEW_OUTPUTS:
            found.append(f"only {outputs} distinct outputs on its test rows")
        reasons.append(
            "the candidate failed its own leakage check at training ("
            + ("; ".join(found) or "see its model page")
            + ")"
        )
    return reasons, [str(warning) for warning in evaluation.get("warnings", [])]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def high_threshold(bands: Sequence[RiskBand]) -> float:
    """Lower bound of the band named ``high``; else of the second-highest band."""
    ordered = sorted(bands, key=lambda band: band.lower)
    for band in ordered:
        if band.name == HIGH_BAND:
            return float(band.lower)
    if len(ordered) < 2:
        raise DataError(
            "a recall in the high bands needs at least two risk bands",
            fields={"risk_bands": "need at least two"},
        )
    return float(ordered[-2].lower)


def score(
    y: np.ndarray, probability: np.ndarray, bands: Sequence[RiskBand], threshold: float
) -> ModelScores:
    """ROC-AUC, Brier, recall at each band and at ``threshold`` for one model on one set."""
    y = np.asarray(y, dtype=np.int64).ravel()
    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 0.0, 1.0)
    both = 0 < int(y.sum()) < len(y)
    rates = accuracy.band_rates(y, p, [(band.name, band.lower) for band in bands])
    positives = y == 1
    return ModelScores(
        roc_auc=float(roc_auc_score(y, p)) if both else None,
        brier=float(brier_score_loss(y, p, labels=[0, 1])),
        recall_high=float(np.mean(p[positives] >= threshold)) if positives.any() else None,
        recall_at_band={row["band"]: row["recall"] for row in rates},
    )


def compare(
    candidate: Scorer,
    production: Scorer,
    sets: Sequence[LabelledSet],
    *,
    bands: Sequence[RiskBand],
) -> Comparison:
    """Score both models on every set; ``bands`` are the candidate's risk bands."""
    threshold = high_threshold(bands)
    results = []
    for labelled in sets:
        if len(labelled.y) == 0:
            continue
        p_candidate = candidate.predict_proba(labelled.matrix_for(candidate.feature_names))
        p_production = production.predict_proba(labelled.matrix_for(production.feature_names))
        results.append(
            SetComparison(
                name=labelled.name,
                description=labelled.description,
                n=len(labelled.y),
                floods=labelled.floods,
                candidate=score(labelled.y, p_candidate, bands, threshold),
                production=score(labelled.y, p_production, bands, threshold),
            )
        )
    return Comparison(high_threshold=threshold, sets=results)


_synthetic_cache: dict[tuple[int, int], LabelledSet] = {}


def synthetic_holdout(
    n_rows: int = GATE_SYNTHETIC_ROWS, *, seed: int = GATE_SYNTHETIC_SEED
) -> LabelledSet:
    """Fresh rows from the documented generator (deterministic; built once per process)."""
    key = (n_rows, seed)
    cached = _synthetic_cache.get(key)
    if cached is None:
        frame = synthetic.generate(n_rows, seed=seed)
        cached = LabelledSet(
            name="synthetic held-out",
            frame=frame[synthetic.FEATURE_NAMES],
            y=frame[synthetic.TARGET].to_numpy(),
            description=f"synthetic generator, {n_rows} rows, seed {seed}",
        )
        _synthetic_cache[key] = cached
    return cached


def synthetic_covers(*feature_lists: Sequence[str]) -> bool:
    """Whether the generator produces every feature of every given model."""
    known = set(synthetic.FEATURE_NAMES)
    return all(set(names) <= known for names in feature_lists)
