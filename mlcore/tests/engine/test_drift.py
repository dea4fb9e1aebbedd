"""Tests for reference statistics and drift measures (PSI, KS)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlcore.engine import drift, synthetic

NAMES = synthetic.FEATURE_NAMES


def measured(value: float | None) -> float:
    """A PSI or KS value the test expects to exist (None is what nothing to measure gives)."""
    assert value is not None
    return value


def sample(n: int, seed: int) -> np.ndarray:
    return synthetic.generate(n, seed=seed)[NAMES].to_numpy(dtype=np.float64)


def test_reference_stats_describe_each_feature() -> None:
    reference = drift.reference_stats(sample(5_000, 1), NAMES)

    assert set(reference) == set(NAMES)
    for name in NAMES:
        entry = reference[name]
        assert entry["quantiles"] == sorted(set(entry["quantiles"]))
        bins = entry["bins"]
        assert bins["edges"] == sorted(set(bins["edges"]))
        assert len(bins["shares"]) == len(bins["edges"]) + 1
        assert len(bins["point_shares"]) == len(bins["points"])
        assert abs(sum(bins["shares"]) + sum(bins["point_shares"]) - 1.0) < 1e-9
        assert len(entry["sample"]) == drift.SAMPLE_POINTS
        assert entry["min"] <= entry["p01"] <= entry["median"] <= entry["p99"] <= entry["max"]
    # Zero-inflated snowmelt: its zeros are one bin of their own, not repeated quantile edges.
    assert len(reference["snowmelt_mm"]["quantiles"]) < 11
    assert reference["snowmelt_mm"]["bins"]["points"] == [0.0]


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

    assert measured(drift.psi(reference["surge"], np.zeros(200))) < 1e-9
    assert measured(drift.psi(reference["surge"], np.full(200, 1.5))) > 1.0


def test_ks_accepts_raw_reference_values() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=2_000)

    assert measured(drift.ks(ref, rng.normal(size=2_000))) < 0.06
    assert measured(drift.ks(ref, rng.normal(loc=1.0, size=2_000))) > 0.3
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
    assert measured(drift.psi(entry, reference_values)) < 1e-9
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


def storm_surge(n: int, seed: int, *, zero_share: float = 0.92, scale: float = 0.4) -> np.ndarray:
    """A mostly-zero feature: most months have no surge at all."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < zero_share, 0.0, rng.exponential(scale, n))


def test_zero_gets_its_own_bin_in_a_mostly_zero_feature() -> None:
    entry = drift.reference_stats(storm_surge(10_000, 1).reshape(-1, 1), ["surge"])["surge"]

    assert entry["bins"]["points"] == [0.0]
    assert 0.9 < entry["bins"]["point_shares"][0] < 0.94
    # The non-zero months are still split by their own quantiles.
    assert len(entry["bins"]["edges"]) >= 3
    assert abs(sum(entry["bins"]["point_shares"]) + sum(entry["bins"]["shares"]) - 1) < 1e-9


def test_mostly_zero_feature_that_shifts_is_flagged() -> None:
    reference = drift.reference_stats(storm_surge(10_000, 1).reshape(-1, 1), ["surge"])
    # Three times as many months with a surge, each about 2.3 times higher: mean x7.
    shifted = storm_surge(2_000, 2, zero_share=0.76, scale=0.93)
    assert shifted.mean() > 6 * reference["surge"]["mean"]

    report = drift.drift_report(reference, shifted.reshape(-1, 1), ["surge"])["surge"]

    assert report["psi"] > drift.PSI_MAJOR
    assert report["level"] == "major"
    assert report["ks"] > 0.1


def test_unshifted_mostly_zero_feature_is_stable() -> None:
    reference = drift.reference_stats(storm_surge(10_000, 1).reshape(-1, 1), ["surge"])

    report = drift.drift_report(reference, storm_surge(2_000, 3).reshape(-1, 1), ["surge"])

    assert report["surge"]["psi"] < 0.05
    assert report["surge"]["level"] == "stable"


def test_heavy_tail_past_the_training_maximum_is_counted_in_the_open_top_bin() -> None:
    rng = np.random.default_rng(4)
    reference = drift.reference_stats(rng.lognormal(1.0, 1.0, (10_000, 1)), ["rain"])["rain"]

    assert measured(drift.psi(reference, rng.lognormal(1.0, 1.0, 2_000))) < 0.05
    # A tail ten times longer lands past every edge the training data had.
    longer = rng.lognormal(1.0, 1.0, 2_000)
    longer[::5] *= 10 * reference["max"]
    assert measured(drift.psi(reference, longer)) > drift.PSI_MAJOR


def test_discrete_feature_gets_a_bin_per_common_value() -> None:
    rng = np.random.default_rng(5)
    months = rng.integers(1, 13, (6_000, 1)).astype(float)
    entry = drift.reference_stats(months, ["month"])["month"]

    assert entry["bins"]["points"] == [float(m) for m in range(1, 13)]
    winter = rng.choice([12.0, 1.0, 2.0], 2_000)
    assert measured(drift.psi(entry, winter)) > drift.PSI_MAJOR
    assert measured(drift.psi(entry, rng.integers(1, 13, 2_000).astype(float))) < 0.05


def test_float32_copies_of_a_point_mass_stay_in_its_bin() -> None:
    values = np.where(np.arange(5_000) % 4 == 0, 0.3, 0.1)  # two values, as a step model gives
    entry = drift.reference_stats(values.reshape(-1, 1), ["p"])["p"]

    assert measured(drift.psi(entry, values.astype(np.float32))) < 1e-9


def test_references_stored_before_point_bins_are_still_read() -> None:
    # The shape manifests had before point-mass bins: deduplicated quantile edges only.
    legacy = {
        "quantiles": [0.0, 1.0, 2.0, 3.0],
        "proportions": [0.3, 0.4, 0.3],
        "sample": list(np.linspace(0.0, 3.0, drift.SAMPLE_POINTS)),
        "min": 0.0,
        "max": 3.0,
        "median": 1.5,
        "mean": 1.5,
    }
    same = np.concatenate([np.full(30, 0.5), np.full(40, 1.5), np.full(30, 2.5)])

    assert measured(drift.psi(legacy, same)) < 1e-9
    assert measured(drift.psi(legacy, np.full(100, 2.5))) > drift.PSI_MAJOR
    report = drift.drift_report({"x": legacy}, same.reshape(-1, 1), ["x"])["x"]
    assert report["level"] == "stable" and report["ks"] is not None
