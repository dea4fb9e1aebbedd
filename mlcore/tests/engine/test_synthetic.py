"""Tests for the synthetic flood data generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt

from mlcore.engine import synthetic


def test_same_seed_gives_identical_data_and_other_seeds_differ() -> None:
    first = synthetic.generate(3_000, seed=5)
    again = synthetic.generate(3_000, seed=5)
    other = synthetic.generate(3_000, seed=6)

    pdt.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_shape_columns_and_types() -> None:
    frame = synthetic.generate(2_500, seed=1)

    assert frame.shape == (2_500, len(synthetic.FEATURES) + 1)
    assert list(frame.columns) == [*synthetic.FEATURE_NAMES, synthetic.TARGET]
    assert set(frame[synthetic.TARGET].unique()) == {0, 1}
    for spec in synthetic.FEATURES:
        assert frame[spec.name].notna().all()
        expected_kind = "i" if spec.dtype == "int" else "f"
        assert frame[spec.name].dtype.kind == expected_kind, spec.name


def test_every_value_lies_within_its_documented_range() -> None:
    frame = synthetic.generate(50_000, seed=2)

    for spec in synthetic.FEATURES:
        column = frame[spec.name]
        assert column.min() >= spec.minimum, spec.name
        assert column.max() <= spec.maximum, spec.name
        assert spec.description and spec.unit and spec.group


def test_flood_rate_is_between_15_and_30_percent() -> None:
    rate = synthetic.generate(50_000, seed=4)[synthetic.TARGET].mean()

    assert 0.15 <= rate <= 0.30


def test_defaults_are_typical_values() -> None:
    frame = synthetic.generate(50_000, seed=8)

    for spec in synthetic.FEATURES:
        low, high = frame[spec.name].quantile([0.25, 0.75])
        assert low <= spec.default <= high, spec.name


def test_relationships_an_analyst_would_expect() -> None:
    frame = synthetic.generate(50_000, seed=9)
    rain = frame["rainfall_24h_mm"]

    assert (frame["rainfall_72h_mm"] >= rain).all()
    assert frame["rainfall_72h_mm"].corr(rain) > 0.5
    heavy = frame[rain > rain.quantile(0.9)][synthetic.TARGET].mean()
    dry = frame[rain < rain.quantile(0.5)][synthetic.TARGET].mean()
    assert heavy > 2 * dry
    near_high_river = frame[(frame["river_level_m"] > 5) & (frame["distance_to_river_m"] < 300)][
        synthetic.TARGET
    ].mean()
    assert near_high_river > frame[synthetic.TARGET].mean()


def test_smaller_requests_are_prefixes_of_larger_ones() -> None:
    small = synthetic.generate(1_234, seed=3)
    large = synthetic.generate(25_000, seed=3)

    pdt.assert_frame_equal(small, large.iloc[:1_234])


def test_zero_rows_gives_an_empty_frame_with_all_columns() -> None:
    frame = synthetic.generate(0)

    assert frame.empty
    assert list(frame.columns) == [*synthetic.FEATURE_NAMES, synthetic.TARGET]


def test_streamed_csv_holds_the_same_rows_whatever_the_chunk_size(tmp_path) -> None:
    expected = synthetic.generate(25_000, seed=12)
    for chunk_rows in (10_000, 100_000):
        path = tmp_path / f"flood-{chunk_rows}.csv"
        written = synthetic.write_csv(path, 25_000, seed=12, chunk_rows=chunk_rows)
        assert written == path.stat().st_size

        loaded = pd.read_csv(path)
        assert list(loaded.columns) == list(expected.columns)
        pdt.assert_frame_equal(loaded, expected, check_dtype=False, check_index_type=False)
        assert np.array_equal(loaded[synthetic.TARGET], expected[synthetic.TARGET])


def test_streamed_chunks_stay_bounded() -> None:
    sizes = [len(frame) for frame in synthetic.iter_frames(35_000, seed=1, chunk_rows=20_000)]

    assert sizes == [20_000, 15_000]
