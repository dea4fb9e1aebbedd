"""Calibration: mapping a model's scores onto observed flood rates, measured on held-out rows.

A gradient-boosting model's probability is a score that ranks sites well but need not mean
"this often": of the sites it puts at 30 %, 10 % or 60 % may flood. Training sets aside a
calibration slice of the training rows (never the test rows), fits two maps on it and keeps
the one that lowers the Brier score in cross-validation, or none when neither does:

- ``sigmoid`` (Platt): calibrated log-odds = ``slope * log_odds(p) + intercept``; two numbers,
  safe on a few hundred rows;
- ``isotonic``: a non-decreasing curve through the slice's observed rates (centred: one point
  per isotonic step, joined by straight lines between ``x`` and ``y``), flexible but needing
  rows, so it is only tried from ISOTONIC_MIN_ROWS up.

The map is applied after the model everywhere a probability is served: scikit-learn and ONNX
(where it is part of the exported graph), so forms, the API, batches, monitoring and the edge
package all read the same calibrated number. Explanations explain the model's score; the map's
own share is reported beside them, so the shares still add up to the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedKFold

from mlcore.engine.errors import SchemaError

METHODS = ("sigmoid", "isotonic")
# What training accepts: auto chooses between the methods and none.
CHOICES = ("auto", "none", *METHODS)
# Rows and rows of each class the calibration slice needs before any map is fitted.
MIN_ROWS = 200
MIN_PER_CLASS = 20
# Isotonic regression fits a free curve; below this it follows the slice's noise.
ISOTONIC_MIN_ROWS = 1_000
FOLDS = 5
# The least share of the slice's rows behind each point of an isotonic map.
STEP_SHARE = 0.02
# The share by which a map must lower the cross-validated Brier score (against no map and
# against any simpler map) to be used: the two numbers of a sigmoid need less evidence than
# an isotonic curve, whose steps follow the slice's noise (seen: a forest whose isotonic map
# gained 1.1 % in cross-validation and lost 1.3 % on the test rows).
MIN_GAIN = {"sigmoid": 0.01, "isotonic": 0.03}
RELIABILITY_BINS = 10
# Scores of exactly 0 or 1 have no log-odds, and near them a float32 backend's score is mostly
# rounding (ONNX gave 8.9e-8 where scikit-learn gave 7.2e-8, and 1 - 2.7e-6 for 1 - 2.6e-6),
# which the sigmoid map, working on log-odds, would magnify: it reads every score as at least
# this far from 0 and 1. No calibration slice could tell rates that close to 0 or 1 apart.
CLIP = 1e-4


def _log_odds(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), CLIP, 1 - CLIP)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibration:
    """One fitted map from the model's probability to a calibrated probability."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SchemaError(
                f"calibration method must be one of {', '.join(METHODS)}, not {self.method!r}",
                fields={"calibration": "unknown method"},
            )
        if self.method == "isotonic":
            x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
            if (
                x.size < 2
                or x.shape != y.shape
                or np.any(np.diff(x) < 0)
                or np.any(np.diff(y) < 0)
                or not np.all(np.isfinite(x))
                or not np.all((y >= 0) & (y <= 1))
            ):
                raise SchemaError(
                    "an isotonic calibration needs two or more increasing points with y in [0, 1]",
                    fields={"calibration": "malformed"},
                )
        elif not (np.isfinite(self.slope) and np.isfinite(self.intercept)):
            raise SchemaError(
                "a sigmoid calibration needs a finite slope and intercept",
                fields={"calibration": "malformed"},
            )

    def apply(self, probability: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for the model's probabilities (any shape)."""
        p = np.asarray(probability, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(p, self.x, self.y)
        return 1.0 / (1.0 + np.exp(-(self.slope * _log_odds(p) + self.intercept)))

    def describe(self) -> str:
        if self.method == "sigmoid":
            return (
                f"sigmoid: calibrated log-odds = {self.slope:.3f} x model log-odds "
                f"{self.intercept:+.3f}"
            )
        return f"isotonic: a non-decreasing map through {len(self.x)} points"

    def to_dict(self) -> dict[str, Any]:
        if self.method == "sigmoid":
            return {"method": "sigmoid", "slope": self.slope, "intercept": self.intercept}
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        """The map a manifest stores, or None for a manifest without one (or with none)."""
        if not data or not data.get("method"):
            return None
        try:
            return cls(
                method=str(data["method"]),
                slope=float(data.get("slope", 1.0)),
                intercept=float(data.get("intercept", 0.0)),
                x=tuple(float(value) for value in data.get("x", ())),
                y=tuple(float(value) for value in data.get("y", ())),
            )
        except (TypeError, ValueError) as exc:
            raise SchemaError(
                f"the manifest's calibration is malformed: {exc}",
                fields={"calibration": "malformed"},
            ) from exc


def _fit(method: str, probability: np.ndarray, y: np.ndarray) -> Calibration:
    if method == "sigmoid":
        # An almost unpenalised logistic fit of the label on the model's log-odds (Platt).
        model = LogisticRegression(C=1e6, max_iter=1000)
        model.fit(_log_odds(probability).reshape(-1, 1), y)
        return Calibration(
            "sigmoid", slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0])
        )
    # Never quite 0 or 1: a slice of n rows cannot show a rate below about 1 in 2n.
    floor = 0.5 / len(y)
    isotonic = IsotonicRegression(y_min=floor, y_max=1 - floor, out_of_bounds="clip")
    fitted = isotonic.fit_transform(probability, y)
    # Isotonic regression gives flat steps joined by near-vertical ramps, where a score moving
    # by a float32 rounding can jump several points, and a step of a few rows is noise. Runs of
    # steps are merged until each holds STEP_SHARE of the rows, and each merged step becomes
    # one point at its rows' mean score and flood rate, the points joined by straight lines
    # (centred isotonic regression): still non-decreasing, fitted to the same rates, no cliff.
    levels, step = np.unique(fitted, return_inverse=True)
    rows_of_point: list[list[float]] = []
    rows = np.bincount(step)
    score_sum = np.bincount(step, weights=probability)
    rate_sum = rows * levels
    least = max(1, int(np.ceil(STEP_SHARE * len(y))))
    x: list[float] = []
    rates: list[float] = []
    held = [0.0, 0.0, 0.0]  # rows, score sum, rate sum of the run being merged
    for index in range(len(levels)):
        held = [held[0] + rows[index], held[1] + score_sum[index], held[2] + rate_sum[index]]
        if held[0] >= least or index == len(levels) - 1:
            if held[0] < least and x:
                # The last run is short: fold it into the point before.
                before = rows_of_point.pop()
                held = [held[0] + before[0], held[1] + before[1], held[2] + before[2]]
                x.pop()
                rates.pop()
            x.append(held[1] / held[0])
            rates.append(held[2] / held[0])
            rows_of_point.append(held)
            held = [0.0, 0.0, 0.0]
    if len(x) < 2:
        # One step: the slice shows a single rate; keep the map flat across the scores seen.
        x, rates = [float(probability.min()), float(probability.max()) + CLIP], rates * 2
    return Calibration("isotonic", x=tuple(x), y=tuple(rates))


def choose(
    probability: np.ndarray, y: np.ndarray, *, seed: int = 0, method: str = "auto"
) -> tuple[Calibration | None, dict[str, Any]]:
    """Fit the map that best calibrates ``probability`` for labels ``y``, or None.

    With ``method="auto"`` the candidates are compared by their Brier score on cross-validation
    folds of the slice (each map scored on rows it was not fitted on); a map is used only when
    it lowers the mean by its MIN_GAIN and does better than no map in all folds but one. A
    named method is fitted whatever the scores say (they are still reported). Returns the map
    fitted on the whole slice, and a report of the choice.
    """
    probability = np.asarray(probability, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=2)
    report: dict[str, Any] = {
        "rows": len(y),
        "flood": int(counts[1]),
        "no_flood": int(counts[0]),
        "method": "none",
    }
    if len(y) < MIN_ROWS or counts.min() < MIN_PER_CLASS:
        report["reason"] = (
            f"not calibrated: the calibration slice has {len(y):,} rows ({counts[1]:,} flood, "
            f"{counts[0]:,} no_flood); at least {MIN_ROWS} rows and {MIN_PER_CLASS} of each "
            "class are needed"
        )
        return None, report
    if method == "none":
        report["reason"] = "not calibrated: --calibration none"
        return None, report
    methods = ["sigmoid"] + (["isotonic"] if len(y) >= ISOTONIC_MIN_ROWS else [])
    if method in METHODS:
        methods = [method]
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {name: [] for name in ["none", *methods]}
    for fit_rows, check_rows in folds.split(probability.reshape(-1, 1), y):
        truth = y[check_rows]
        scores["none"].append(brier_score_loss(truth, probability[check_rows]))
        for name in methods:
            fitted = _fit(name, probability[fit_rows], y[fit_rows])
            scores[name].append(brier_score_loss(truth, fitted.apply(probability[check_rows])))
    brier = {name: float(np.mean(values)) for name, values in scores.items()}
    report["cross_validated_brier"] = brier
    report["folds_improved"] = {
        name: int(sum(a < b for a, b in zip(scores[name], scores["none"], strict=True)))
        for name in methods
    }
    # A map must beat no map clearly and steadily: on a well-calibrated model the maps' gains
    # are noise, and a map fitted to noise makes the test rows worse.
    earned = [
        name
        for name in methods
        if brier[name] <= (1 - MIN_GAIN[name]) * brier["none"]
        and report["folds_improved"][name] >= FOLDS - 1
    ]
    best = "none"
    for name in earned:  # simplest first: a freer map must beat a simpler one clearly too
        if best == "none" or brier[name] <= (1 - MIN_GAIN[name]) * brier[best]:
            best = name
    if method in METHODS:
        best = method
    elif len(y) < ISOTONIC_MIN_ROWS:
        report["isotonic_skipped"] = (
            f"isotonic not tried: {len(y):,} rows, under {ISOTONIC_MIN_ROWS:,}"
        )
    if best == "none":
        report["reason"] = (
            "not calibrated: no map lowered the cross-validated Brier score enough ("
            + ", ".join(f"{name} {MIN_GAIN[name]:.0%}" for name in methods)
            + f", in {FOLDS - 1} of {FOLDS} folds): the model is already about as calibrated "
            "as the slice can show"
        )
        return None, report
    chosen = _fit(best, probability, y)
    report["method"] = best
    verb = "chosen: it lowered" if method == "auto" else "as asked; it took"
    report["reason"] = (
        f"{best} {verb} the cross-validated Brier score from {brier['none']:.4f} to "
        f"{brier[best]:.4f}"
    )
    report["map"] = chosen.to_dict()
    return chosen, report


def reliability(
    y: np.ndarray, probability: np.ndarray, *, bins: int = RELIABILITY_BINS
) -> dict[str, Any]:
    """A reliability table: per probability bin, rows, mean predicted and observed flood rate.

    Equal-width bins over [0, 1]; empty bins are left out. ``ece`` is the expected calibration
    error: the row-weighted mean gap between predicted and observed.
    """
    y = np.asarray(y, dtype=np.float64)
    probability = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((probability * bins).astype(np.int64), bins - 1)
    table = []
    gap = 0.0
    for b in range(bins):
        rows = index == b
        n = int(rows.sum())
        if not n:
            continue
        predicted = float(probability[rows].mean())
        observed = float(y[rows].mean())
        gap += n * abs(predicted - observed)
        table.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "rows": n,
                "predicted": predicted,
                "observed": observed,
            }
        )
    return {"bins": table, "ece": gap / len(y) if len(y) else None}


def thresholds_for_recall(
    probability: np.ndarray, y: np.ndarray, targets: Sequence[tuple[str, float]]
) -> dict[str, float]:
    """For each (band, recall), the highest lower bound that still catches that share of floods.

    A band starting at t catches the floods scored at t or above; the highest such t with
    recall >= the target is the flood probability of the k-th highest-scored flood, k being the
    number of floods the target needs.
    """
    scores = np.sort(np.asarray(probability, dtype=np.float64)[np.asarray(y) == 1])[::-1]
    if scores.size == 0:
        raise SchemaError(
            "no floods in the validation rows to choose band thresholds from",
            fields={"bands": "no floods"},
        )
    chosen = {}
    for name, recall in targets:
        needed = max(1, int(np.ceil(recall * scores.size - 1e-9)))
        chosen[name] = float(scores[needed - 1])
    return chosen
