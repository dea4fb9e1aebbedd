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


def test_field_records_set_the_traps_of_a_real_station_archive(tmp_path) -> None:
    path = tmp_path / "stations.csv"
    meant = synthetic.write_field_records_csv(path, stations=6, years=10, seed=2)

    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw and b", Flood?\r\n" in raw
    assert len(meant) == 6 * 10 * 12
    labels = meant[synthetic.FIELD_TARGET]
    assert set(labels) == {"YES", "NO", ""}
    assert 0.6 < (labels == "").mean() < 0.9  # most months: blank, meaning no flood
    # A strong season: floods in winter, explicit NOs only on summer inspections.
    winter = meant["month"].isin([12, 1, 2])
    assert (labels[winter] == "YES").mean() > 5 * (labels[~winter] == "YES").mean()
    assert set(meant.loc[labels == "NO", "month"]) <= {6, 7, 8}
    serial = meant[synthetic.FIELD_SERIAL]
    assert serial.is_unique and serial.is_monotonic_increasing
    assert serial.iloc[-1] - serial.iloc[0] + 1 > len(serial)  # a counter with gaps
    assert meant.groupby(synthetic.FIELD_STATION)["station_no"].nunique().eq(1).all()
    assert meant.groupby(synthetic.FIELD_STATION)["easting"].nunique().eq(1).all()
    assert list(meant.columns[:5]) == ["record_no", "station", "station_no", "easting", "northing"]


def test_field_records_can_label_by_a_threshold_on_one_column() -> None:
    frame = synthetic.generate_field_records(stations=4, years=5, label="threshold")

    flooded = frame[synthetic.FIELD_TARGET] == "YES"
    assert flooded.eq(frame["river_level_m"] >= synthetic.FIELD_THRESHOLD_M).all()
    assert "easting" in frame and "easting" not in synthetic.generate_field_records(
        stations=2, years=1, coordinates=False
    )
