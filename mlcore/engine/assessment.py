"""Held-out evaluation that tells the truth: the split, intervals, test size and leakage checks.

* Split: ``random`` (stratified), ``time:COLUMN`` (train on the earlier rows, test on the rows
  from a cut-off value on; ties never straddle the cut) or ``group:COLUMN`` (whole groups, e.g.
  stations, are held out; the model is measured on places it never saw).
* Intervals: 95 % percentile bootstrap of the test rows (of the held-out groups for a group
  split, since rows of one station are not independent) for ROC-AUC, Brier and recall per band.
* Test size: fewer than ``MIN_TEST_PER_CLASS`` rows of a class in the test set is refused; fewer
  than ``WARN_TEST_ROWS`` rows or ``WARN_TEST_PER_CLASS`` of a class is warned about.
* Leakage: a single column whose ROC-AUC on its own is at least ``LEAK_AUC`` (a label that
  is a threshold on one column, or a column recorded from the outcome); a model whose answers
  take at most ``FEW_OUTPUTS`` distinct values (it has memorised a separation, not learned a
  probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from mlcore.engine.errors import DataError
from mlcore.engine.schema import RiskBand

SPLIT_KINDS = ("random", "time", "group")
MIN_TEST_PER_CLASS = 5
WARN_TEST_ROWS = 200
WARN_TEST_PER_CLASS = 30
MIN_GROUPS = 5
LEAK_AUC = 0.98
FEW_OUTPUTS = 10
BOOTSTRAP_RESAMPLES = 200
# A column with this few distinct values is read as categories: month 1 and month 12 are
# neighbours in the season, so their order says nothing and each value gets its own rate.
_CATEGORY_MAX_VALUES = 24


@dataclass
class Split:
    """Which rows train and which test, and how that was decided."""

    train: np.ndarray
    test: np.ndarray
    description: dict[str, Any] = field(default_factory=dict)
    test_groups: np.ndarray | None = None  # group label of each test row (group split only)


def parse_split(text: str) -> tuple[str, str | None]:
    """``random``, ``time:COLUMN`` or ``group:COLUMN`` as (kind, column)."""
    kind, _, column = (text or "random").partition(":")
    kind, column = kind.strip().lower(), column.strip()
    if kind not in SPLIT_KINDS or (kind == "random") != (column == ""):
        raise DataError(
            f"split must be random, time:COLUMN or group:COLUMN, not {text!r}",
            fields={"split": "invalid choice"},
        )
    return kind, column or None


def _ordered(values: pd.Series) -> pd.Series:
    """Time values as something that sorts in time: numbers, else dates, else text."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() >= 0.9 * values.notna().sum():
        return numbers
    dates = pd.to_datetime(values, errors="coerce", format="mixed")
    if dates.notna().sum() >= 0.9 * values.notna().sum():
        return dates
    return values.astype(str)


def split_rows(
    y: np.ndarray,
    *,
    kind: str = "random",
    values: pd.Series | None = None,
    column: str | None = None,
    test_size: float = 0.2,
    seed: int = 0,
) -> Split:
    """Split row positions into train and test the stated way (``values``: the split column)."""
    positions = np.arange(len(y))
    if kind == "random":
        try:
            train, test = train_test_split(
                positions, test_size=test_size, stratify=y, random_state=seed
            )
        except ValueError as exc:
            raise DataError(f"cannot split the data for testing: {exc}") from exc
        description = {"kind": "random", "test_size": test_size, "seed": seed, "stratified": True}
        # Unsorted: the same rows in the same order as before splits were configurable.
        return Split(train, test, description)
    if values is None or column is None:
        raise DataError(f"a {kind} split needs a column", fields={"split": "no column"})
    values = values.reset_index(drop=True)
    if kind == "time":
        return _time_split(values, column, test_size)
    return _group_split(values, column, test_size, seed)


def _time_split(values: pd.Series, column: str, test_size: float) -> Split:
    ordered = _ordered(values)
    present = ordered.notna().to_numpy()
    counts = ordered[present].value_counts().sort_index(ascending=False)
    wanted = test_size * int(present.sum())
    taken, cut = 0, None
    for value, count in counts.items():
        if taken >= wanted:
            break
        taken += int(count)
        cut = value
    if cut is None or taken == int(present.sum()):
        raise DataError(
            f"column {column!r} has too few distinct values to split by time",
            fields={"split": "one value only"},
        )
    test_mask = present & (ordered >= cut).to_numpy()
    train_mask = ~test_mask  # rows without a time value can only be trained on
    description = {
        "kind": "time",
        "column": column,
        "test_from": _plain(cut),
        "train_until": _plain(ordered[train_mask & present].max()),
        "rows_without_time": int((~present).sum()),
    }
    positions = np.arange(len(values))
    return Split(positions[train_mask], positions[test_mask], description)


def _group_split(values: pd.Series, column: str, test_size: float, seed: int) -> Split:
    labels = values.astype(str).where(values.notna(), "")
    groups = labels.unique()
    if len(groups) < 2:
        raise DataError(
            f"column {column!r} has one group only; a group split needs two or more",
            fields={"split": "one group only"},
        )
    rng = np.random.default_rng(seed)
    sizes = labels.value_counts()
    held: list[str] = []
    taken = 0
    for group in rng.permutation(groups):
        if taken >= test_size * len(labels) or len(held) == len(groups) - 1:
            break
        held.append(str(group))
        taken += int(sizes[group])
    test_mask = labels.isin(held).to_numpy()
    positions = np.arange(len(values))
    description = {
        "kind": "group",
        "column": column,
        "groups": len(groups),
        "test_groups": sorted(held),
    }
    return Split(
        positions[~test_mask], positions[test_mask], description, labels[test_mask].to_numpy()
    )


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a year read as 1996.0 is the year 1996
    return value


def check_test_size(y_test: np.ndarray, split: Split) -> list[str]:
    """Refuse a test set that cannot measure anything; warn about one too small to trust."""
    floods = int((y_test == 1).sum())
    dry = len(y_test) - floods
    how = split.description.get("kind", "random")
    if min(floods, dry) < MIN_TEST_PER_CLASS:
        raise DataError(
            f"the {how} split leaves {floods} flood and {dry} no_flood row(s) in the test set; "
            f"at least {MIN_TEST_PER_CLASS} of each are needed to measure the model",
            fields={"split": "too few test rows of a class"},
        )
    warnings = []
    if len(y_test) < WARN_TEST_ROWS or min(floods, dry) < WARN_TEST_PER_CLASS:
        warnings.append(
            f"the test set holds only {len(y_test)} rows ({floods} floods, {dry} no_flood): "
            "its metrics are rough; read them with their intervals"
        )
    if how == "group" and split.description["groups"] < MIN_GROUPS:
        warnings.append(
            f"only {split.description['groups']} groups in {split.description['column']!r}: "
            "the result depends on which were held out"
        )
    elif how == "group" and len(split.description["test_groups"]) < MIN_GROUPS:
        # The interval resamples held-out groups; a handful of them cannot show the spread.
        warnings.append(
            f"only {len(split.description['test_groups'])} groups held out: the interval "
            "understates how much another choice of groups would change the result"
        )
    return warnings


def _band_recall(y: np.ndarray, p: np.ndarray, lower: float) -> float:
    positives = y == 1
    return float(np.mean(p[positives] >= lower)) if positives.any() else float("nan")


def bootstrap_intervals(
    y: np.ndarray,
    probability: np.ndarray,
    bands: Sequence[RiskBand],
    *,
    groups: np.ndarray | None = None,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """95 % percentile intervals for ROC-AUC, Brier and recall at each band above the lowest."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    if groups is not None:
        members = [np.flatnonzero(groups == group) for group in np.unique(groups)]
    thresholds = {band.name: band.lower for band in bands if band.lower > 0}
    draws: dict[str, list[float]] = {"roc_auc": [], "brier": []}
    recall: dict[str, list[float]] = {name: [] for name in thresholds}
    for _ in range(resamples):
        if groups is None:
            index = rng.integers(0, len(y), len(y))
        else:
            picked = rng.integers(0, len(members), len(members))
            index = np.concatenate([members[i] for i in picked])
        ys, ps = y[index], p[index]
        if 0 < ys.sum() < len(ys):
            draws["roc_auc"].append(float(roc_auc_score(ys, ps)))
        draws["brier"].append(float(brier_score_loss(ys, ps, labels=[0, 1])))
        for name, lower in thresholds.items():
            recall[name].append(_band_recall(ys, ps, lower))

    def interval(values: list[float]) -> list[float] | None:
        finite = np.asarray(values)[np.isfinite(values)] if values else np.array([])
        if finite.size < resamples // 2:
            return None
        return [float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))]

    return {
        "method": (
            f"bootstrap of the held-out {'groups' if groups is not None else 'rows'}, "
            f"{resamples} resamples"
        ),
        "level": 0.95,
        "roc_auc": interval(draws["roc_auc"]),
        "brier": interval(draws["brier"]),
        "recall_at_band": {name: interval(values) for name, values in recall.items()},
    }


def single_column_auc(values: pd.Series, y: np.ndarray) -> float | None:
    """How well one column alone ranks floods (0.5 = not at all, 1 = perfectly), or None.

    A column with few distinct values (a month, a code) is read as categories, each scored
    by its flood rate; any other column by its values, in whichever direction ranks better.
    """
    y = np.asarray(y, dtype=np.int64)
    present = values.notna().to_numpy()
    if present.sum() < 2 * MIN_TEST_PER_CLASS:
        return None
    kept, labels = values[present].reset_index(drop=True), y[present]
    if not 0 < labels.sum() < len(labels):
        return None
    distinct = kept.nunique()
    text = not pd.api.types.is_numeric_dtype(kept)
    if text and distinct > max(_CATEGORY_MAX_VALUES, len(kept) // 5):
        # A code per row (or nearly): each code's flood rate is its own label, which proves
        # nothing about separation; ids are reported by the column roles instead.
        return None
    if distinct <= _CATEGORY_MAX_VALUES or text:
        rate = pd.Series(labels).groupby(kept.astype(str)).transform("mean").to_numpy()
        return float(roc_auc_score(labels, rate))
    auc = float(roc_auc_score(labels, pd.to_numeric(kept, errors="coerce").fillna(0.0)))
    return max(auc, 1.0 - auc)


def separating_columns(frame: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    """Every column whose ROC-AUC on its own is at least LEAK_AUC, highest first."""
    found = {}
    for name in frame.columns:
        auc = single_column_auc(frame[name], y)
        if auc is not None and auc >= LEAK_AUC:
            found[name] = round(auc, 4)
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def leakage_checks(
    frame: pd.DataFrame, y_train: np.ndarray, probability_test: np.ndarray
) -> dict[str, Any]:
    """Single-column separation on the training rows and the spread of the model's answers."""
    separating = separating_columns(frame, y_train)
    distinct = int(np.unique(np.round(np.asarray(probability_test, dtype=np.float64), 6)).size)
    warnings = [
        f"{name!r} alone separates the classes (ROC-AUC {auc:.3f} on its own): the label may "
        "be a threshold on it or recorded from it"
        for name, auc in separating.items()
    ]
    if distinct <= FEW_OUTPUTS:
        warnings.append(
            f"the model's answers take only {distinct} distinct value(s) on the test rows: it "
            "has found a clean separation, not a probability; look for a leak"
        )
    return {
        "single_column_threshold": LEAK_AUC,
        "separating_columns": separating,
        "distinct_outputs": distinct,
        "passed": not warnings,
        "warnings": warnings,
    }


def _interval_text(interval: Sequence[float] | None, digits: int) -> str:
    if not interval:
        return "no interval"
    return f"95% interval {interval[0]:.{digits}f}-{interval[1]:.{digits}f}"


def split_text(split: dict[str, Any]) -> str:
    """One line saying how the test rows were chosen."""
    kind = split.get("kind")
    if kind == "time":
        return (
            f"by time on {split['column']!r}: trained up to {split['train_until']}, "
            f"tested from {split['test_from']} on"
        )
    if kind == "group":
        held = split.get("test_groups") or []
        return (
            f"by group on {split['column']!r}: {len(held)} of {split['groups']} groups held "
            f"out whole ({', '.join(map(str, held[:6]))}{', ...' if len(held) > 6 else ''})"
        )
    if kind == "random":
        return f"random, stratified, {split.get('test_size', 0.2):.0%} held out"
    return "not recorded"


def describe_evaluation(metrics: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """The split, the metrics with their intervals, the leakage check and every warning."""
    if not evaluation:
        return []
    counts = evaluation.get("test_counts", {})
    intervals = evaluation.get("intervals", {})
    lines = [
        f"split: {split_text(evaluation.get('split', {}))}; test set {counts.get('rows', 0):,} "
        f"rows ({counts.get('flood', 0):,} flood, {counts.get('no_flood', 0):,} no_flood)"
    ]
    if metrics.get("roc_auc") is not None:
        lines.append(
            f"ROC-AUC {metrics['roc_auc']:.3f} ({_interval_text(intervals.get('roc_auc'), 3)}), "
            f"Brier {metrics['brier']:.4f} ({_interval_text(intervals.get('brier'), 4)})"
        )
    for band, value in (metrics.get("recall_at_band") or {}).items():
        interval = (intervals.get("recall_at_band") or {}).get(band)
        lines.append(f"recall at band {band}: {value:.3f} ({_interval_text(interval, 3)})")
    if intervals.get("method"):
        lines.append(f"intervals: {intervals['method']}")
    leakage = evaluation.get("leakage") or {}
    if leakage:
        verdict = "passed" if leakage.get("passed") else "FAILED"
        separating = leakage.get("separating_columns") or {}
        lines.append(
            f"leakage check {verdict}: "
            + (
                ", ".join(f"{name} alone ROC-AUC {auc:.3f}" for name, auc in separating.items())
                or f"no single feature reaches ROC-AUC {leakage.get('single_column_threshold')}"
            )
            + f"; {leakage.get('distinct_outputs')} distinct outputs on the test rows"
        )
    lines += calibration_lines(metrics, evaluation)
    lines += [f"WARNING: {warning}" for warning in evaluation.get("warnings", [])]
    return lines


def calibration_lines(metrics: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    """How the probabilities were calibrated, how well on the test rows, and where bands sit."""
    lines = []
    calibration = evaluation.get("calibration") or {}
    if calibration:
        lines.append(f"calibration: {calibration.get('reason', calibration.get('method'))}")
        served = (calibration.get("reliability") or {}).get("ece")
        bare = (calibration.get("reliability_uncalibrated") or {}).get("ece")
        if served is not None and calibration.get("method") != "none" and bare is not None:
            lines.append(
                f"calibration error on the test rows: {bare:.4f} before, {served:.4f} after "
                f"(Brier {metrics.get('uncalibrated_brier', 0):.4f} before)"
            )
        elif served is not None:
            lines.append(f"calibration error on the test rows: {served:.4f}")
    bands = evaluation.get("bands") or {}
    if bands.get("source") == "recall":
        chosen = ", ".join(
            f"{name} from {bands['lowers'][name]:.3f} (recall {target:.0%} on held-out "
            "training rows)"
            for name, target in bands.get("targets", {}).items()
        )
        lines.append(f"risk bands chosen for recall: {chosen}")
    elif bands.get("source") == "given":
        lines.append("risk bands: as given by --bands")
    return lines
