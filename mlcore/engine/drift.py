"""Input drift: reference statistics captured at training time, and PSI / KS against new data."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

PROBABILITY_KEY = "__probability__"
SAMPLE_POINTS = 500
PSI_EPSILON = 1e-4
# A value held by at least this share of the rows (zero in a mostly-dry feature, each month of
# a month column, the few outputs of a step-like model) is a point mass and gets its own bin:
# quantile bins cannot split a point mass, so a change in its share would otherwise go unseen.
POINT_MASS_SHARE = 0.05
# The outermost 1 % on each side of the spread part gets its own open-ended bin when there are
# enough rows to fill it, so a heavy tail growing longer registers before the deciles move.
TAIL_SHARE = 0.01
MIN_BIN_ROWS = 10
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
            "bins": None,
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
    p01, median, p99 = np.quantile(finite, [0.01, 0.5, 0.99])
    return {
        # Deciles, for people reading the manifest; PSI reads ``bins``.
        "quantiles": [float(edge) for edge in np.unique(np.quantile(finite, _DECILES))],
        "bins": _bins(finite, bins),
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


_DECILES = np.linspace(0.0, 1.0, 11)


def _as_float32(values: np.ndarray) -> np.ndarray:
    # Values past float32's range become +-inf and so match no point mass, which is right.
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32)


def _bins(finite: np.ndarray, bins: int) -> dict[str, list[float]]:
    """Bins for PSI: one per point mass, then deduplicated quantile bins of the rest.

    Point masses are matched at float32 precision, the precision the ONNX backend computes
    in, so the same value seen through either backend lands in the same bin. The spread part
    has open-ended outer bins (below the first edge, from the last edge up), so no value ever
    falls outside the bins, however far past the training range.
    """
    single = _as_float32(finite)
    values32, first, counts = np.unique(single, return_index=True, return_counts=True)
    heavy = counts >= POINT_MASS_SHARE * finite.size
    points = finite[first[heavy]]
    rest = finite[~np.isin(single, values32[heavy])]
    n_bins = max(1, min(bins, rest.size // MIN_BIN_ROWS))
    levels = list(np.arange(1, n_bins) / n_bins)
    if rest.size * TAIL_SHARE >= MIN_BIN_ROWS:
        levels = [TAIL_SHARE, *levels, 1.0 - TAIL_SHARE]
    edges = np.unique(np.quantile(rest, levels)) if rest.size and levels else np.empty(0)
    spec = {"points": [float(point) for point in points], "edges": [float(e) for e in edges]}
    point_shares, shares = _bin_shares(spec, finite)
    spec["point_shares"] = [float(share) for share in point_shares]
    spec["shares"] = [float(share) for share in shares]
    return spec


def _bin_shares(spec: Mapping[str, Any], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of ``values`` in each point-mass bin, and in each bin of the spread part."""
    points = _as_float32(np.asarray(spec.get("points") or [], dtype=np.float64))
    edges = np.asarray(spec.get("edges") or [], dtype=np.float64)
    total = max(values.size, 1)
    point_counts = np.zeros(points.size, dtype=np.int64)
    rest = values
    if points.size:
        single = _as_float32(values)
        index = np.minimum(np.searchsorted(points, single), points.size - 1)
        matched = points[index] == single
        point_counts = np.bincount(index[matched], minlength=points.size)
        rest = values[~matched]
    counts = np.bincount(np.searchsorted(edges, rest, side="right"), minlength=edges.size + 1)
    return point_counts / total, counts / total


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


def serving_probability_stats(
    score: Callable[[np.ndarray], np.ndarray], X: np.ndarray, *, backend: str
) -> dict[str, Any] | None:
    """Reference entry for P(flood) as the serving backend computes it; None without rows.

    Monitoring compares the probabilities serving returned with this entry, so it must come
    from the same backend: ONNX computes in float32, and on a model whose outputs pile up on
    a few values a float64 reference shifts every one of them and reads as drift. Rows serving
    would refuse (a missing value) are left out, as serving never scores them.
    """
    rows = np.asarray(X, dtype=np.float64)
    if rows.ndim != 2:
        return None
    rows = rows[np.isfinite(rows).all(axis=1)]
    if rows.shape[0] == 0:
        return None
    entry = probability_stats(score(rows))
    entry["backend"] = backend
    return entry


def psi(reference_entry: Mapping[str, Any], values: np.ndarray) -> float | None:
    """Population stability index of ``values`` against the reference bins; None if undefined.

    Reads both shapes of reference: ``bins`` (point masses + spread part), and the plain
    quantile ``quantiles``/``proportions`` of manifests stored before point-mass bins existed.
    """
    current = _finite(values)
    spec = reference_entry.get("bins")
    if isinstance(spec, Mapping):
        expected_points = np.asarray(spec.get("point_shares") or [], dtype=np.float64)
        expected_rest = np.asarray(spec.get("shares") or [], dtype=np.float64)
        if current.size == 0 or expected_points.sum() + expected_rest.sum() <= 0:
            return None
        if expected_points.size != len(spec.get("points") or []) or expected_rest.size != (
            len(spec.get("edges") or []) + 1
        ):
            return None
        actual_points, actual_rest = _bin_shares(spec, current)
        expected = np.concatenate([expected_points, expected_rest])
        actual = np.concatenate([actual_points, actual_rest])
        return _psi_sum(expected, actual)
    return _legacy_psi(reference_entry, current)


def _psi_sum(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.maximum(expected, PSI_EPSILON)
    actual = np.maximum(actual, PSI_EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _legacy_psi(reference_entry: Mapping[str, Any], current: np.ndarray) -> float | None:
    """PSI against a reference stored before point-mass bins: quantile edges only."""
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
    return _psi_sum(expected, actual)


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
