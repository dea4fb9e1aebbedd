"""Tests for CSV loading, feature specs from data, and model training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcore.engine import synthetic, training
from mlcore.engine.errors import DataError
from mlcore.engine.schema import DEFAULT_RISK_BANDS


def write(tmp_path, text: str, *, name: str = "data.csv", bom: bool = False, crlf: bool = False):
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def labelled_rows(n: int, *, labels=("yes", "no")) -> str:
    lines = []
    for i in range(n):
        label = labels[i % len(labels)]
        lines.append(f"{10 + i * 1.5:.1f},{i % 7},{label}")
    return "\n".join(lines) + "\n"


def test_bom_crlf_padded_headers_and_yes_no_labels_are_handled(tmp_path) -> None:
    body = " rain_mm , soil_pct ,  flooded \n" + labelled_rows(30).replace(",", " , ")
    path = write(tmp_path, body, bom=True, crlf=True)

    data = training.load_training_csv(path, target="flooded")

    assert data.features == ["rain_mm", "soil_pct"]
    assert data.target == "flooded"
    assert data.frame["flooded"].tolist() == [1, 0] * 15
    assert data.frame["rain_mm"].iloc[1] == 11.5
    assert data.frame["rain_mm"].dtype == np.float64
    assert data.fingerprint["rows"] == 30
    assert data.fingerprint["columns"] == ["rain_mm", "soil_pct", "flooded"]
    assert len(data.fingerprint["sha256"]) == 64


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("TRUE", "False"), [1, 0]),
        (("Y", "n"), [1, 0]),
        (("1", "0"), [1, 0]),
        (("Flood", "NO_FLOOD"), [1, 0]),
    ],
)
def test_common_label_spellings_map_to_one_and_zero(tmp_path, labels, expected) -> None:
    path = write(tmp_path, "rain,soil,target\n" + labelled_rows(10, labels=labels))

    data = training.load_training_csv(path, target="target")

    assert data.frame["target"].tolist() == expected * 5


def test_unmappable_labels_are_named(tmp_path) -> None:
    path = write(tmp_path, "rain,soil,target\n" + labelled_rows(9, labels=("yes", "no", "maybe")))

    with pytest.raises(DataError, match="'maybe' \\(3\\)") as caught:
        training.load_training_csv(path, target="target")

    assert caught.value.fields == {"target": "unrecognised labels"}


def test_blank_targets_are_dropped_and_counted(tmp_path) -> None:
    rows = labelled_rows(20).splitlines()
    rows[3] = rows[3].rsplit(",", 1)[0] + ","
    rows[8] = rows[8].rsplit(",", 1)[0] + ",  "
    path = write(tmp_path, "rain,soil,flooded\n" + "\n".join(rows) + "\n")

    data = training.load_training_csv(path, target="flooded")

    assert len(data.frame) == 18
    assert "dropped 2 row(s) with a blank target" in data.report


def test_blank_targets_can_be_refused(tmp_path) -> None:
    rows = labelled_rows(20).splitlines()
    rows[3] = rows[3].rsplit(",", 1)[0] + ","
    path = write(tmp_path, "rain,soil,flooded\n" + "\n".join(rows) + "\n")

    with pytest.raises(DataError, match="1 row\\(s\\) have a blank target"):
        training.load_training_csv(path, target="flooded", blank_target="refuse")


def test_id_columns_are_dropped_with_a_note(tmp_path) -> None:
    lines = [f"S{i:03d},{i + 1},{i * 0.5},{i % 5},{'yes' if i % 3 else 'no'}" for i in range(40)]
    path = write(tmp_path, "station_code,row,rain,soil,flooded\n" + "\n".join(lines) + "\n")

    data = training.load_training_csv(path, target="flooded")

    assert data.features == ["rain", "soil"]
    assert any("'station_code'" in line for line in data.report)
    assert any("'row'" in line for line in data.report)


def test_explicitly_requested_id_column_is_used_with_a_warning(tmp_path) -> None:
    lines = [f"{i},{i * 0.5},{'yes' if i % 3 else 'no'}" for i in range(40)]
    path = write(tmp_path, "station_id,rain,flooded\n" + "\n".join(lines) + "\n")

    data = training.load_training_csv(path, target="flooded", features=["station_id", "rain"])

    # --features wins, but never silently.
    assert data.features == ["station_id", "rain"]
    assert data.warnings == [
        "--features includes 'station_id', which looks like an id column (its name marks it "
        "as an identifier); it is used because you asked for it"
    ]
    role = next(role for role in data.column_roles if role.name == "station_id")
    assert (role.role, role.detected) == ("feature", "id")


def test_text_in_a_numeric_column_is_refused_naming_it(tmp_path) -> None:
    rows = labelled_rows(20).splitlines()
    rows[5] = "heavy,3,yes"
    path = write(tmp_path, "rain,soil,flooded\n" + "\n".join(rows) + "\n")

    with pytest.raises(DataError, match="'rain'") as caught:
        training.load_training_csv(path, target="flooded")

    assert set(caught.value.fields) == {"rain"}
    assert "'heavy'" in caught.value.fields["rain"]


def test_requested_text_column_is_refused_but_unrequested_one_ignored(tmp_path) -> None:
    lines = [f"{['north', 'south'][i % 2]},{i * 0.5},{'yes' if i % 3 else 'no'}" for i in range(30)]
    path = write(tmp_path, "region,rain,flooded\n" + "\n".join(lines) + "\n")

    data = training.load_training_csv(path, target="flooded")
    assert data.features == ["rain"]
    assert "ignored text column 'region'" in data.report

    with pytest.raises(DataError) as caught:
        training.load_training_csv(path, target="flooded", features=["region", "rain"])
    assert set(caught.value.fields) == {"region"}


def test_missing_values_are_kept_for_the_imputer(tmp_path) -> None:
    rows = labelled_rows(20).splitlines()
    rows[2] = "NA,3,yes"
    rows[4] = ",3,no"
    path = write(tmp_path, "rain,soil,flooded\n" + "\n".join(rows) + "\n")

    data = training.load_training_csv(path, target="flooded")

    assert data.frame["rain"].isna().sum() == 2
    assert "2 blank feature value(s) will be filled with the training median" in data.report


def test_all_blank_column_is_refused_naming_it(tmp_path) -> None:
    lines = [f"{i * 0.5},,{'yes' if i % 3 else 'no'}" for i in range(30)]
    path = write(tmp_path, "rain,gauge_b,flooded\n" + "\n".join(lines) + "\n")

    with pytest.raises(DataError, match="gauge_b") as caught:
        training.load_training_csv(path, target="flooded")

    assert caught.value.fields == {"gauge_b": "every value is blank"}


def test_missing_target_lists_the_available_columns(tmp_path) -> None:
    path = write(tmp_path, "rain,soil,flood\n" + labelled_rows(10))

    with pytest.raises(DataError, match="available columns: rain, soil, flood") as caught:
        training.load_training_csv(path, target="flooded")

    assert caught.value.fields == {"flooded": "missing column"}


def test_a_single_class_is_refused(tmp_path) -> None:
    path = write(tmp_path, "rain,soil,flooded\n" + labelled_rows(10, labels=("no",)))

    with pytest.raises(DataError, match="both classes"):
        training.load_training_csv(path, target="flooded")


def test_header_only_file_is_refused(tmp_path) -> None:
    path = write(tmp_path, "rain,soil,flooded\n")

    with pytest.raises(DataError, match="no data rows"):
        training.load_training_csv(path, target="flooded")


def test_empty_file_is_refused(tmp_path) -> None:
    path = write(tmp_path, "")

    with pytest.raises(DataError, match="empty"):
        training.load_training_csv(path, target="flooded")


def test_oversized_file_is_refused_before_it_is_read(tmp_path) -> None:
    # Invalid UTF-8 and no target column: any attempt to parse it would fail differently.
    path = tmp_path / "huge.csv"
    path.write_bytes(b"\xff\xfe not a csv at all " * 100)

    with pytest.raises(DataError, match="2,000 bytes, over the 1,000-byte limit"):
        training.load_training_csv(path, target="flooded", max_bytes=1_000)


def test_latin1_file_is_read_with_a_note(tmp_path) -> None:
    body = "pluie_mm,humidité,flooded\n" + labelled_rows(10)
    path = tmp_path / "latin.csv"
    path.write_bytes(body.encode("latin-1"))

    data = training.load_training_csv(path, target="flooded")

    assert data.features == ["pluie_mm", "humidité"]
    assert any("Latin-1" in line for line in data.report)


def test_synthetic_csv_loads_every_feature(tmp_path) -> None:
    path = tmp_path / "synthetic.csv"
    synthetic.write_csv(path, 500, seed=2)

    data = training.load_training_csv(path, target="flooded")

    assert data.features == synthetic.FEATURE_NAMES
    assert data.report == []


def test_default_model_ranks_floods_well(trained) -> None:
    metrics = trained.manifest.metrics

    assert metrics["roc_auc"] > 0.8
    assert 0.0 < metrics["brier"] < 0.2
    assert metrics["accuracy"] > 0.75
    calibration_rows = trained.manifest.evaluation["calibration"].get("rows", 0)
    assert metrics["n_train"] + calibration_rows + metrics["n_test"] == 5_000
    assert metrics["n_test"] == len(trained.y_test) == 1_000
    assert metrics["positive_rate"] == pytest.approx(trained.y_test.mean())
    recalls = [metrics["recall_at_band"][band] for band in ("moderate", "high", "severe")]
    assert recalls == sorted(recalls, reverse=True)
    assert all(0.0 <= value <= 1.0 for value in recalls)


def test_manifest_records_what_is_needed_to_audit_the_model(trained) -> None:
    manifest = trained.manifest

    assert manifest.feature_names == synthetic.FEATURE_NAMES
    assert manifest.class_labels == ["no_flood", "flood"]
    assert manifest.algorithm == "hgb"
    assert manifest.library_versions["scikit-learn"]
    assert manifest.library_versions["python"]
    assert manifest.data_fingerprint["rows"] == 5_000
    assert set(manifest.reference) == {*synthetic.FEATURE_NAMES, "__probability__"}
    assert manifest.trained_at.endswith("+00:00")
    json.dumps(manifest.to_dict(), allow_nan=False)


def test_progress_is_reported_at_each_stage() -> None:
    messages: list[str] = []
    data = training.synthetic_training_data(2_000, seed=1)

    training.train_model(data, algorithm="logistic", progress=messages.append)

    assert len(messages) >= 5
    assert messages[0].startswith("Splitting 2,000 rows")
    assert messages[-1].startswith("Done: ROC-AUC")


@pytest.mark.parametrize("algorithm", ["logistic", "random_forest"])
def test_other_algorithms_train_and_score(algorithm) -> None:
    data = training.synthetic_training_data(3_000, seed=2)

    model = training.train_model(data, algorithm=algorithm, seed=2)

    assert model.manifest.algorithm == algorithm
    assert model.manifest.metrics["roc_auc"] > 0.8


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    data = training.synthetic_training_data(1_000)

    with pytest.raises(DataError, match="hgb, logistic, random_forest") as caught:
        training.train_model(data, algorithm="xgboost")

    assert caught.value.fields == {"algorithm": "unknown algorithm"}


def test_too_few_rows_of_a_class_is_refused(tmp_path) -> None:
    path = write(tmp_path, "rain,soil,flooded\n" + labelled_rows(12, labels=("no",) * 5 + ("yes",)))
    data = training.load_training_csv(path, target="flooded")

    with pytest.raises(DataError, match="at least 5 rows of each class"):
        training.train_model(data)


def test_training_on_a_user_csv_end_to_end(tmp_path) -> None:
    frame = synthetic.generate(3_000, seed=4)[["rainfall_24h_mm", "river_level_m", "flooded"]]
    frame = frame.assign(flooded=frame["flooded"].map({1: "Yes", 0: "No"}))
    path = tmp_path / "gauges.csv"
    frame.to_csv(path, index=False)

    data = training.load_training_csv(path, target="flooded")
    model = training.train_model(data, name="gauges", risk_bands=DEFAULT_RISK_BANDS[:2])

    assert model.manifest.feature_names == ["rainfall_24h_mm", "river_level_m"]
    assert [band.name for band in model.manifest.risk_bands] == ["low", "moderate"]
    assert set(model.manifest.metrics["recall_at_band"]) == {"moderate"}
    assert model.manifest.metrics["roc_auc"] > 0.7


def test_the_default_model_manifest_carries_the_hard_limits(trained) -> None:
    features = {f["name"]: f for f in trained.manifest.to_dict()["features"]}
    assert (
        features["soil_moisture_pct"]["hard_minimum"],
        features["soil_moisture_pct"]["hard_maximum"],
    ) == (0.0, 100.0)


# --- Field records: label policy, column roles, honest evaluation (issue 18) ---------------


@pytest.fixture(scope="module")
def field_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("field") / "stations.csv"
    synthetic.write_field_records_csv(path, stations=8, years=20, seed=1)
    return path


def test_blank_labels_read_as_no_keep_every_row_and_count_the_classes(field_csv) -> None:
    meant = synthetic.generate_field_records(stations=8, years=20, seed=1)
    floods = int((meant[synthetic.FIELD_TARGET] == "YES").sum())

    data = training.load_training_csv(field_csv, target="Flood?", blank_target="no")

    policy = data.label_policy
    assert len(data.frame) == len(meant) == policy["after"]["rows"]
    assert policy["blank_target"] == "no"
    assert policy["before"]["flood"] == floods == policy["after"]["flood"]
    assert policy["before"]["blank"] == int((meant[synthetic.FIELD_TARGET] == "").sum())
    assert policy["after"]["no_flood"] == len(meant) - floods
    assert data.frame["Flood?"].sum() == floods
    # Most of the labelled rows are floods; read as no, the blanks bring the share down a lot.
    assert any("moves the flood share" in warning for warning in data.warnings)


def test_dropping_blank_labels_warns_that_the_month_alone_separates_what_is_left(
    field_csv,
) -> None:
    data = training.load_training_csv(field_csv, target="Flood?", blank_target="drop")

    assert "dropped" in data.report[0] and data.label_policy["after"]["rows"] < 0.4 * 1920
    assert any("removed" in warning and "rows" in warning for warning in data.warnings)
    assert "month" in data.label_policy["separating_columns"]
    assert any("'month' alone separates" in warning for warning in data.warnings)


def test_blank_labels_are_refused_with_the_choices_named(field_csv) -> None:
    with pytest.raises(DataError, match="--blank-target no") as caught:
        training.load_training_csv(field_csv, target="Flood?", blank_target="refuse")
    assert set(caught.value.fields) == {"Flood?"}

    data = training.load_training_csv(field_csv, target="Flood?", blank_target="yes")
    assert data.label_policy["after"]["flood"] > 0.7 * len(data.frame)


def test_every_column_gets_a_role_and_ids_are_never_features(field_csv) -> None:
    data = training.load_training_csv(
        field_csv, target="Flood?", blank_target="no", exclude=["temperature_c"]
    )

    roles = {role.name: role.role for role in data.column_roles}
    assert roles == {
        "record_no": "id",
        "station": "group",
        "station_no": "id",
        "easting": "id",
        "northing": "id",
        "year": "time",
        "month": "feature",
        "period": "time",
        "rain_mm": "feature",
        "max_day_rain_mm": "feature",
        "soil_moisture_pct": "feature",
        "river_level_m": "feature",
        "temperature_c": "ignored",
        "Flood?": "label",
    }
    assert data.features == [
        "month",
        "rain_mm",
        "max_day_rain_mm",
        "soil_moisture_pct",
        "river_level_m",
    ]
    assert all(role.why for role in data.column_roles)


def test_a_counter_with_gaps_is_an_id_whatever_its_name(tmp_path) -> None:
    frame = synthetic.generate_field_records(stations=3, years=4, coordinates=False)
    frame = frame.rename(columns={"record_no": "ref", "station_no": "gauge"})
    frame = frame[frame["Flood?"] != ""]  # dropping rows leaves gaps in the serial
    path = tmp_path / "f.csv"
    frame.to_csv(path, index=False)

    data = training.load_training_csv(path, target="Flood?", features=["ref", "rain_mm"])

    assert data.features == ["ref", "rain_mm"]
    assert any("'ref'" in warning and "an id column" in warning for warning in data.warnings)


def test_time_split_tests_on_the_latest_years_and_group_split_on_unseen_stations(
    field_csv,
) -> None:
    data = training.load_training_csv(field_csv, target="Flood?", blank_target="no")

    by_time = training.train_model(data, algorithm="logistic", split="time:year")
    split = by_time.manifest.evaluation["split"]
    assert split["kind"] == "time" and split["test_from"] == 1997
    assert split["train_until"] == 1996
    assert by_time.manifest.evaluation["test_counts"]["rows"] == 8 * 4 * 12

    by_group = training.train_model(data, algorithm="logistic", split="group:station")
    split = by_group.manifest.evaluation["split"]
    assert split["kind"] == "group" and split["groups"] == 8
    held = set(split["test_groups"])
    assert 1 <= len(held) < 8
    assert by_group.manifest.evaluation["test_counts"]["rows"] == len(held) * 20 * 12
    assert "groups" in by_group.manifest.evaluation["intervals"]["method"]
    assert any(
        "groups held out: the interval understates" in warning
        for warning in by_group.manifest.evaluation["warnings"]
    )

    with pytest.raises(DataError, match="split column 'decade' not found"):
        training.train_model(data, split="time:decade")
    with pytest.raises(DataError, match="random, time:COLUMN or group:COLUMN"):
        training.train_model(data, split="station")


def test_metrics_come_with_intervals_that_hold_them(field_csv) -> None:
    data = training.load_training_csv(field_csv, target="Flood?", blank_target="no")

    model = training.train_model(data, algorithm="logistic")

    metrics, intervals = model.manifest.metrics, model.manifest.evaluation["intervals"]
    low, high = intervals["roc_auc"]
    assert low <= metrics["roc_auc"] <= high and high - low < 0.2
    low, high = intervals["brier"]
    assert low <= metrics["brier"] <= high
    assert set(intervals["recall_at_band"]) == set(metrics["recall_at_band"])
    assert model.manifest.evaluation["leakage"]["passed"]
    json.dumps(model.manifest.to_dict(), allow_nan=False)


def test_a_label_that_is_a_threshold_on_one_column_is_flagged(tmp_path) -> None:
    path = tmp_path / "threshold.csv"
    synthetic.write_field_records_csv(path, stations=6, years=15, label="threshold")
    data = training.load_training_csv(path, target="Flood?", blank_target="no")

    model = training.train_model(data, algorithm="logistic")

    leakage = model.manifest.evaluation["leakage"]
    assert not leakage["passed"]
    assert leakage["separating_columns"]["river_level_m"] == 1.0
    assert any(
        "'river_level_m' alone separates" in w for w in model.manifest.evaluation["warnings"]
    )


def test_a_model_with_a_handful_of_outputs_and_a_tiny_test_set_are_warned_about(tmp_path) -> None:
    lines = [f"{i % 2},{(i * 7) % 11},{'yes' if i % 2 else 'no'}" for i in range(118)]
    path = write(tmp_path, "gate_open,soil,flooded\n" + "\n".join(lines) + "\n")
    data = training.load_training_csv(path, target="flooded")

    model = training.train_model(data)

    warnings = model.manifest.evaluation["warnings"]
    assert any("the test set holds only 24 rows" in warning for warning in warnings)
    assert any("distinct value(s)" in warning for warning in warnings)


def test_a_code_on_every_row_is_not_mistaken_for_a_column_that_separates(tmp_path) -> None:
    lines = [
        f"ST{i:04d},{i % 7},{'' if i % 10 == 0 else ('yes' if i % 3 else 'no')}" for i in range(300)
    ]
    path = write(tmp_path, "station_code,soil,flooded\n" + "\n".join(lines) + "\n")

    data = training.load_training_csv(path, target="flooded", blank_target="drop")

    assert data.label_policy["separating_columns"] == {}
    assert data.warnings == []
