"""Input drift: reference statistics captured at training time, and PSI / KS against new data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PROBABILITY_KEY = "__probability__"
SAMPLE_POINTS = 500
PSI_EPSILON = 1e-4
# Conventional PSI reading: below 0.1 stable, 0.1-0.25 worth watching, above 0.25 a real shift.
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _entry(values: np.ndarray, bins: int) -> dict[str, Any]:
    n_total = int(values.size)
    finite = _finite(values)
    missing_rate = 1.0 - finite.size / n_total if n_total else 0.0
    if finite.size == 0:
        return {
            "quantiles": [],
            "proportions": [],
            "sample": [],
            "min": None,
            "max": None,
            "median": None,
            "mean": None,
            "std": None,
            "p01": None,
            "p99": None,
            "n": 0,
            "missing_rate": missing_rate,
        }
    # Quantile edges adapt to skewed data (rainfall is mostly near zero); duplicates from
    # discrete or zero-inflated features are merged so no bin is empty by construction.
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    proportions = _bin_proportions(edges, finite)
    p01, median, p99 = np.quantile(finite, [0.01, 0.5, 0.99])
    return {
        "quantiles": [float(edge) for edge in edges],
        "proportions": [float(share) for share in proportions],
        "sample": [float(point) for point in np.quantile(finite, _sample_levels())],
        "min": float(finite.min()),
        "max": float(finite.max()),
        "median": float(median),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "p01": float(p01),
        "p99": float(p99),
        "n": int(finite.size),
        "missing_rate": float(missing_rate),
    }


def _sample_levels() -> np.ndarray:
    # Mid-points of SAMPLE_POINTS equal-mass slices: a compact stand-in for the training
    # sample whose empirical CDF matches the real one to within 1/SAMPLE_POINTS.
    return (np.arange(SAMPLE_POINTS) + 0.5) / SAMPLE_POINTS


def _bin_proportions(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of ``values`` per bin, with the outermost bins stretched to -inf and +inf."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=inner.size + 1)
    return counts / max(values.size, 1)


def reference_stats(
    X: np.ndarray, feature_names: Sequence[str], *, bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Per-feature summary of the training inputs, stored in the manifest for later checks."""
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(
            f"expected a 2-D array with {len(feature_names)} columns, got shape {matrix.shape}"
        )
    return {name: _entry(matrix[:, i], bins) for i, name in enumerate(feature_names)}


def probability_stats(probabilities: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Reference entry for predicted probabilities, to spot shifts in what the model outputs."""
    return _entry(np.asarray(probabilities, dtype=np.float64).ravel(), bins)


def psi(reference_entry: Mapping[str, Any], values: np.ndarray) -> float | None:
    """Population stability index of ``values`` against the reference bins; None if undefined."""
    current = _finite(values)
    edges = reference_entry.get("quantiles") or []
    expected = np.asarray(reference_entry.get("proportions") or [], dtype=np.float64)
    if current.size == 0 or len(edges) == 0 or expected.size != max(len(edges) - 1, 1):
        return None
    actual = _bin_proportions(edges, current)
    if len(edges) == 1:
        # A constant training feature: one bin holding everything, so compare "equal" vs not.
        expected = np.array([1.0, 0.0])
        same = np.isclose(current, edges[0])
        actual = np.array([same.mean(), 1.0 - same.mean()])
    expected = np.maximum(expected, PSI_EPSILON)
    actual = np.maximum(actual, PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks(
    reference: Mapping[str, Any] | Sequence[float] | np.ndarray, values: np.ndarray
) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic between the reference sample and ``values``.

    ``reference`` is either a reference entry (its stored quantile sample is used) or raw
    reference values. Returns the largest gap between the two empirical CDFs, in [0, 1].
    """
    sample = reference.get("sample", []) if isinstance(reference, Mapping) else reference
    ref = np.sort(_finite(sample))
    current = np.sort(_finite(values))
    if ref.size == 0 or current.size == 0:
        return None
    points = np.concatenate([ref, current])
    cdf_ref = np.searchsorted(ref, points, side="right") / ref.size
    cdf_current = np.searchsorted(current, points, side="right") / current.size
    return float(np.max(np.abs(cdf_ref - cdf_current)))


def level_for(psi_value: float | None) -> str:
    if psi_value is None:
        return "unknown"
    if psi_value >= PSI_MAJOR:
        return "major"
    if psi_value >= PSI_MODERATE:
        return "moderate"
    return "stable"


def drift_report(
    manifest_reference: Mapping[str, Any], X: np.ndarray, feature_names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """PSI, KS and a plain-words level per feature for a batch of recent inputs.

    PSI and KS are bounded whatever the values; the recent ``mean`` is taken with each value
    clipped to the training range (``outside`` counts those past it), so it is bounded too.

    Empty input or a feature without reference statistics gives None values rather than an
    error, so a dashboard can still render the rest.
    """
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.size == 0:
        matrix = np.empty((0, len(feature_names)))
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(
            f"expected a 2-D array with {len(feature_names)} columns, got shape {matrix.shape}"
        )
    report: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(feature_names):
        column = matrix[:, i]
        n = int(np.isfinite(column).sum())
        entry = manifest_reference.get(name)
        if not isinstance(entry, Mapping):
            report[name] = {
                "psi": None,
                "ks": None,
                "n": n,
                "level": "unknown",
                "reason": "no reference statistics",
            }
            continue
        psi_value = psi(entry, column)
        ks_value = ks(entry, column)
        result: dict[str, Any] = {
            "psi": psi_value,
            "ks": ks_value,
            "n": n,
            "level": level_for(psi_value),
        }
        if n == 0:
            result["reason"] = "no recent values"
        low, high = entry.get("min"), entry.get("max")
        if entry.get("mean") is not None and low is not None and high is not None and n:
            finite = column[np.isfinite(column)]
            # Each recent value counts at most at the edge of the training range, so one absurd
            # value (a row scored before hard limits existed) can neither swamp the mean nor
            # overflow it; how many were past the edges is reported beside it.
            result["mean"] = float(np.clip(finite, low, high).mean())
            result["outside"] = int(np.count_nonzero((finite < low) | (finite > high)))
            result["reference_mean"] = entry["mean"]
        report[name] = result
    return report
