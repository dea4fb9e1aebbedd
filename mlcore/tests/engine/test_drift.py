"""Tests for reference statistics and drift measures (PSI, KS)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlcore.engine import drift, synthetic

NAMES = synthetic.FEATURE_NAMES


def sample(n: int, seed: int) -> np.ndarray:
    return synthetic.generate(n, seed=seed)[NAMES].to_numpy(dtype=np.float64)


def test_reference_stats_describe_each_feature() -> None:
    reference = drift.reference_stats(sample(5_000, 1), NAMES)

    assert set(reference) == set(NAMES)
    for name in NAMES:
        entry = reference[name]
        edges = entry["quantiles"]
        assert edges == sorted(set(edges))
        assert len(entry["proportions"]) == max(len(edges) - 1, 1)
        assert abs(sum(entry["proportions"]) - 1.0) < 1e-9
        assert len(entry["sample"]) == drift.SAMPLE_POINTS
        assert entry["min"] <= entry["p01"] <= entry["median"] <= entry["p99"] <= entry["max"]
    # Zero-inflated snowmelt collapses its repeated zero edges instead of making empty bins.
    assert len(reference["snowmelt_mm"]["quantiles"]) < 11


def test_same_distribution_shows_no_drift() -> None:
    reference = drift.reference_stats(sample(10_000, 1), NAMES)

    report = drift.drift_report(reference, sample(10_000, 2), NAMES)

    for name in NAMES:
        assert report[name]["psi"] < 0.02, name
        assert report[name]["ks"] < 0.05, name
        assert report[name]["level"] == "stable"
        assert report[name]["n"] == 10_000


def test_doubled_rainfall_is_flagged_as_major_drift() -> None:
    reference = drift.reference_stats(sample(10_000, 1), NAMES)
    recent = sample(5_000, 2)
    rain = NAMES.index("rainfall_24h_mm")
    recent[:, rain] *= 2

    report = drift.drift_report(reference, recent, NAMES)

    assert report["rainfall_24h_mm"]["psi"] > 0.2
    assert report["rainfall_24h_mm"]["ks"] > 0.1
    assert report["rainfall_24h_mm"]["level"] in {"moderate", "major"}
    assert report["rainfall_24h_mm"]["mean"] > 1.8 * report["rainfall_24h_mm"]["reference_mean"]
    assert report["elevation_m"]["psi"] < 0.02


def test_empty_input_gives_empty_results_without_error() -> None:
    reference = drift.reference_stats(sample(2_000, 1), NAMES)

    for empty in (np.empty((0, len(NAMES))), np.array([])):
        report = drift.drift_report(reference, empty, NAMES)
        assert set(report) == set(NAMES)
        for entry in report.values():
            assert entry["psi"] is None
            assert entry["ks"] is None
            assert entry["n"] == 0
            assert entry["level"] == "unknown"


def test_feature_without_reference_is_reported_not_raised() -> None:
    reference = drift.reference_stats(sample(2_000, 1)[:, :2], NAMES[:2])

    report = drift.drift_report(reference, sample(500, 2)[:, :3], NAMES[:3])

    assert report[NAMES[2]]["psi"] is None
    assert report[NAMES[2]]["reason"] == "no reference statistics"
    assert report[NAMES[0]]["psi"] is not None


def test_constant_training_feature_still_detects_change() -> None:
    reference = drift.reference_stats(np.zeros((1_000, 1)), ["surge"])

    assert drift.psi(reference["surge"], np.zeros(200)) < 1e-9
    assert drift.psi(reference["surge"], np.full(200, 1.5)) > 1.0


def test_ks_accepts_raw_reference_values() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2_000)

    assert drift.ks(ref, rng.normal(size=2_000)) < 0.06
    assert drift.ks(ref, rng.normal(loc=1.0, size=2_000)) > 0.3
    assert drift.ks(ref, np.array([np.nan])) is None


_values = arrays(
    np.float64,
    st.integers(min_value=1, max_value=300),
    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=150, deadline=None)
@given(reference_values=_values, current=_values, bins=st.integers(min_value=1, max_value=20))
def test_psi_is_never_negative_and_ks_stays_in_unit_interval(
    reference_values, current, bins
) -> None:
    entry = drift.reference_stats(reference_values.reshape(-1, 1), ["x"], bins=bins)["x"]

    value = drift.psi(entry, current)
    assert value is not None and value >= 0.0
    assert drift.psi(entry, reference_values) < 1e-9
    distance = drift.ks(entry, current)
    assert distance is not None and 0.0 <= distance <= 1.0


def test_absurd_recent_values_leave_the_mean_bounded_and_are_counted() -> None:
    reference = drift.reference_stats(sample(5_000, 1), NAMES)
    recent = sample(200, 2)
    rain = NAMES.index("rainfall_24h_mm")
    recent[::2, rain] = 1.7e307  # rows scored before hard limits; their sum overflows

    report = drift.drift_report(reference, recent, NAMES)["rainfall_24h_mm"]

    assert reference["rainfall_24h_mm"]["min"] <= report["mean"]
    assert report["mean"] <= reference["rainfall_24h_mm"]["max"]
    assert report["outside"] == 100
    assert 0 <= report["psi"] < 10
