"""Accuracy on observed outcomes: ROC-AUC, Brier score, calibration and per-band recall.

Plain numpy/scikit-learn over (outcome, predicted probability) pairs. Every degenerate case
(no outcomes, one class only) is a result with a reason, never an exception, so a monitoring
check or a dashboard can always render what it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score

CALIBRATION_BINS = 10
NO_OUTCOMES = "no outcomes yet"
ONE_CLASS = "only one class observed ({label}); ROC-AUC needs floods and non-floods"


def calibration_curve(
    y_true: np.ndarray, probability: np.ndarray, *, bins: int = CALIBRATION_BINS
) -> list[dict[str, Any]]:
    """Reliability curve: per equal-width bin of predicted probability, the observed flood rate.

    Empty bins are left out rather than reported as a rate of 0, which would read as "never
    floods" instead of "no data".
    """
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # A probability of exactly 1.0 belongs to the last bin, not to a bin of its own.
    index = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    curve = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        if not count:
            continue
        curve.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "mean_predicted": float(p[members].mean()),
                "observed_rate": float(y[members].mean()),
                "count": count,
            }
        )
    return curve


def band_rates(
    y_true: np.ndarray, probability: np.ndarray, thresholds: Sequence[tuple[str, float]]
) -> list[dict[str, Any]]:
    """Per risk band threshold: recall (floods at or above it) and false-alarm rate.

    The false-alarm rate is the share of non-floods at or above the threshold (the false
    positive rate). A band starting at 0 flags everything and says nothing, so it is skipped.
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(probability, dtype=np.float64).ravel()
    positives = y == 1
    negatives = ~positives
    rows = []
    for name, lower in sorted(thresholds, key=lambda band: band[1]):
        if lower <= 0:
            continue
        flagged = p >= lower
        rows.append(
            {
                "band": name,
                "threshold": float(lower),
                "recall": float(flagged[positives].mean()) if positives.any() else None,
                "false_alarm_rate": float(flagged[negatives].mean()) if negatives.any() else None,
                "flagged": int(flagged.sum()),
            }
        )
    return rows


def accuracy_report(
    y_true: np.ndarray | Sequence[int],
    probability: np.ndarray | Sequence[float],
    thresholds: Sequence[tuple[str, float]],
    *,
    bins: int = CALIBRATION_BINS,
) -> dict[str, Any]:
    """Everything known about how well the predictions matched what happened.

    ``thresholds`` are the (band name, lower probability) pairs of the model's risk bands.
    ``status`` is "ok", or "no_outcomes" with a ``reason``; ``roc_auc`` is None with
    ``roc_auc_reason`` when only one class was observed.
    """
    y = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.clip(np.asarray(probability, dtype=np.float64).ravel(), 0.0, 1.0)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} outcomes but {p.size} probabilities")
    n = int(y.size)
    positives = int((y == 1).sum())
    report: dict[str, Any] = {
        "status": "ok",
        "n": n,
        "floods": positives,
        "non_floods": n - positives,
        "roc_auc": None,
        "accuracy": None,
        "brier": None,
        "calibration": [],
        "bands": [],
    }
    if n == 0:
        report.update(status="no_outcomes", reason=NO_OUTCOMES)
        return report
    if 0 < positives < n:
        report["roc_auc"] = float(roc_auc_score(y, p))
    else:
        report["roc_auc_reason"] = ONE_CLASS.format(
            label="floods only" if positives else "non-floods only"
        )
    report["accuracy"] = float(np.mean((p >= 0.5) == (y == 1)))
    report["brier"] = float(brier_score_loss(y, p, labels=[0, 1]))
    report["positive_rate"] = positives / n
    report["mean_predicted"] = float(p.mean())
    report["calibration"] = calibration_curve(y, p, bins=bins)
    report["bands"] = band_rates(y, p, thresholds)
    return report
