"""Accuracy on outcomes: metrics, calibration, band rates and the degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest

from mlcore.engine import accuracy

BANDS = [("low", 0.0), ("moderate", 0.2), ("high", 0.5), ("severe", 0.8)]


def test_a_perfect_ranking_scores_one_and_every_band_rate_is_counted():
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.3, 0.6, 0.7, 0.9]
    report = accuracy.accuracy_report(y, p, BANDS)
    assert report["status"] == "ok"
    assert report["roc_auc"] == 1.0
    assert report["n"] == 5 and report["floods"] == 2 and report["non_floods"] == 3
    assert report["accuracy"] == pytest.approx(4 / 5)  # 0.6 is a false alarm at 0.5
    expected_brier = np.mean((np.array(p) - np.array(y)) ** 2)
    assert report["brier"] == pytest.approx(expected_brier)
    bands = {row["band"]: row for row in report["bands"]}
    assert "low" not in bands  # a band from 0 flags everything and says nothing
    assert bands["high"]["recall"] == 1.0
    assert bands["high"]["false_alarm_rate"] == pytest.approx(1 / 3)
    assert bands["severe"]["recall"] == 0.5
    assert bands["severe"]["false_alarm_rate"] == 0.0
    assert bands["moderate"]["false_alarm_rate"] == pytest.approx(2 / 3)


def test_calibration_bins_hold_observed_rates_and_counts_and_skip_empty_bins():
    y = [0, 1, 1, 1, 0, 0]
    p = [0.05, 0.95, 1.0, 0.92, 0.08, 0.55]
    curve = accuracy.calibration_curve(np.array(y), np.array(p), bins=10)
    assert [(row["lower"], row["count"]) for row in curve] == [(0.0, 2), (0.5, 1), (0.9, 3)]
    top = curve[-1]
    assert top["observed_rate"] == 1.0  # p = 1.0 lands in the last bin, not beyond it
    assert top["mean_predicted"] == pytest.approx((0.95 + 1.0 + 0.92) / 3)
    assert sum(row["count"] for row in curve) == len(y)


def test_a_well_calibrated_sample_lies_near_the_diagonal():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    for row in accuracy.accuracy_report(y, p, BANDS)["calibration"]:
        assert row["observed_rate"] == pytest.approx(row["mean_predicted"], abs=0.03)


def test_no_outcomes_is_a_result_with_a_reason():
    report = accuracy.accuracy_report([], [], BANDS)
    assert report["status"] == "no_outcomes"
    assert report["reason"] == "no outcomes yet"
    assert report["roc_auc"] is None and report["calibration"] == [] and report["n"] == 0


@pytest.mark.parametrize(("flooded", "words"), [(0, "non-floods only"), (1, "floods only")])
def test_one_class_leaves_roc_auc_undefined_with_the_reason(flooded, words):
    report = accuracy.accuracy_report([flooded] * 4, [0.1, 0.4, 0.6, 0.9], BANDS)
    assert report["status"] == "ok"
    assert report["roc_auc"] is None
    assert words in report["roc_auc_reason"]
    assert report["brier"] is not None and report["calibration"]
    rates = report["bands"][0]
    assert (rates["recall"] is None) == (flooded == 0)
    assert (rates["false_alarm_rate"] is None) == (flooded == 1)


def test_mismatched_lengths_are_a_programming_error():
    with pytest.raises(ValueError, match="3 outcomes but 2 probabilities"):
        accuracy.accuracy_report([0, 1, 0], [0.1, 0.2], BANDS)
