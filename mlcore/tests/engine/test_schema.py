"""Tests for feature specs, risk bands, manifests and input validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlcore.engine import synthetic
from mlcore.engine.errors import EngineError, SchemaError
from mlcore.engine.schema import (
    DEFAULT_RISK_BANDS,
    FeatureSpec,
    Manifest,
    RiskBand,
    place_features,
    validate_frame,
    validate_inputs,
    validate_rows,
    validate_some,
)


def typical_inputs() -> dict[str, object]:
    return {spec.name: spec.default for spec in synthetic.FEATURES}


def test_errors_carry_message_fields_and_code() -> None:
    error = SchemaError("bad inputs", fields={"slope_deg": "required"})

    assert str(error) == "bad inputs"
    assert error.fields == {"slope_deg": "required"}
    assert error.code == "invalid_input"
    assert isinstance(error, EngineError)
    assert EngineError("x").code == "invalid"
    assert EngineError("x", code="custom").code == "custom"


@pytest.mark.parametrize(
    ("probability", "band"),
    [
        (0.0, "low"),
        (0.1999, "low"),
        (0.2, "moderate"),
        (0.4999, "moderate"),
        (0.5, "high"),
        (0.7999, "high"),
        (0.8, "severe"),
        (1.0, "severe"),
    ],
)
def test_band_for_uses_inclusive_lower_bounds(manifest: Manifest, probability, band) -> None:
    assert manifest.band_for(probability).name == band


def test_bands_are_sorted_and_must_start_at_zero(manifest: Manifest) -> None:
    shuffled = [DEFAULT_RISK_BANDS[2], DEFAULT_RISK_BANDS[0], DEFAULT_RISK_BANDS[3]]
    reordered = Manifest(
        name="m",
        features=manifest.features,
        target="flooded",
        class_labels=["no_flood", "flood"],
        risk_bands=shuffled,
        algorithm="hgb",
    )
    assert [band.name for band in reordered.risk_bands] == ["low", "high", "severe"]

    with pytest.raises(SchemaError, match="must start at 0"):
        Manifest(
            name="m",
            features=manifest.features,
            target="flooded",
            class_labels=["no_flood", "flood"],
            risk_bands=[RiskBand("high", 0.5, "", "#000000")],
            algorithm="hgb",
        )


def test_manifest_survives_a_json_round_trip(manifest: Manifest) -> None:
    manifest.metrics = {"roc_auc": np.float64(0.9), "n_test": np.int64(100)}
    manifest.reference = {"rainfall_24h_mm": {"median": np.float32(3.5), "edges": np.arange(3)}}

    text = json.dumps(manifest.to_dict(), allow_nan=False)
    restored = Manifest.from_dict(json.loads(text))

    assert restored.feature_names == synthetic.FEATURE_NAMES
    assert restored.features == manifest.features
    assert restored.risk_bands == manifest.risk_bands
    assert restored.metrics == {"roc_auc": 0.9, "n_test": 100}
    assert restored.reference["rainfall_24h_mm"]["edges"] == [0, 1, 2]


def test_malformed_manifest_names_the_missing_keys(manifest: Manifest) -> None:
    data = manifest.to_dict()
    del data["features"]
    del data["target"]

    with pytest.raises(SchemaError) as caught:
        Manifest.from_dict(data)

    assert caught.value.fields == {"features": "required", "target": "required"}


def test_feature_spec_round_trip_and_range_text() -> None:
    spec = synthetic.FEATURES[0]

    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert spec.range_text() == "between 0 and 500 (mm)"


def test_valid_inputs_come_back_in_schema_order(manifest: Manifest) -> None:
    inputs = dict(reversed(list(typical_inputs().items())))

    values = validate_inputs(manifest, inputs)

    assert values.dtype == np.float64
    assert values.tolist() == [spec.default for spec in synthetic.FEATURES]


def test_numeric_strings_from_forms_are_accepted(manifest: Manifest) -> None:
    inputs = {name: f" {value} " for name, value in typical_inputs().items()}
    inputs["rainfall_24h_mm"] = " 12.5 "
    inputs["historical_flood_count"] = "3"

    values = validate_inputs(manifest, inputs)

    assert values[manifest.feature_names.index("rainfall_24h_mm")] == 12.5
    assert values[manifest.feature_names.index("historical_flood_count")] == 3.0


def test_every_problem_is_reported_at_once(manifest: Manifest) -> None:
    inputs = typical_inputs()
    del inputs["slope_deg"]
    inputs.update(
        {
            "rainfall_24h_mm": "lots",
            "rainfall_72h_mm": True,
            "river_level_m": float("nan"),
            "snowmelt_mm": float("inf"),
            "elevation_m": "",
            "historical_flood_count": 2.5,
            "wind_speed": 10,
        }
    )

    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest, inputs)

    assert caught.value.fields == {
        "slope_deg": "required",
        "elevation_m": "required",
        "rainfall_24h_mm": "must be a finite number",
        "rainfall_72h_mm": "must be a finite number",
        "river_level_m": "must be a finite number",
        "snowmelt_mm": "must be a finite number",
        "historical_flood_count": "must be a whole number",
        "wind_speed": "unknown feature",
    }
    assert caught.value.code == "invalid_input"
    assert "slope_deg: required" in caught.value.message


def test_fill_defaults_completes_missing_features(manifest: Manifest) -> None:
    values = validate_inputs(manifest, {"rainfall_24h_mm": 80}, fill_defaults=True)

    assert values[0] == 80.0
    assert values[1:].tolist() == [spec.default for spec in synthetic.FEATURES[1:]]


def test_out_of_range_values_are_accepted_for_flagging_later(manifest: Manifest) -> None:
    inputs = typical_inputs() | {"rainfall_24h_mm": 900.0, "elevation_m": -50}

    values = validate_inputs(manifest, inputs)

    assert values[0] == 900.0


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.decimals(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=200, deadline=None)
@given(
    inputs=st.dictionaries(
        st.one_of(st.sampled_from(synthetic.FEATURE_NAMES), st.text(max_size=8), st.integers()),
        _ANY_VALUE,
        max_size=20,
    ),
    fill=st.booleans(),
)
def test_arbitrary_inputs_either_validate_or_raise_schema_error(inputs, fill) -> None:
    manifest = Manifest(
        name="m",
        features=list(synthetic.FEATURES),
        target="flooded",
        class_labels=["no_flood", "flood"],
        risk_bands=list(DEFAULT_RISK_BANDS),
        algorithm="hgb",
    )
    try:
        values = validate_inputs(manifest, inputs, fill_defaults=fill)
    except SchemaError as error:
        assert error.fields
        limits = {spec.hard_limit_reason() for spec in synthetic.FEATURES}
        assert set(error.fields.values()) <= {
            "required",
            "unknown feature",
            "must be a finite number",
            "must be a whole number",
            *limits,
        }
    else:
        assert values.shape == (len(synthetic.FEATURES),)
        assert all(math.isfinite(value) for value in values)
        assert not any(
            spec.outside_hard_limits(value)
            for spec, value in zip(synthetic.FEATURES, values, strict=True)
        )


def test_rows_are_validated_together_and_bad_rows_left_out(manifest: Manifest) -> None:
    good = typical_inputs()
    rows = [
        good,
        good | {"rainfall_24h_mm": "abc"},
        {k: v for k, v in good.items() if k != "slope_deg"},
        good | {"rainfall_24h_mm": " 40 "},
        good | {"colour": "blue"},
        good | {"historical_flood_count": 1.5},
    ]

    result = validate_rows(manifest, rows)

    assert result.valid_index.tolist() == [0, 3]
    assert result.matrix.shape == (2, len(synthetic.FEATURES))
    assert result.matrix[1, 0] == 40.0
    assert result.errors == [
        (1, "rainfall_24h_mm", "must be a finite number"),
        (2, "slope_deg", "required"),
        (4, "colour", "unknown feature"),
        (5, "historical_flood_count", "must be a whole number"),
    ]
    assert result.n_invalid == 4


def test_plain_numeric_rows_match_single_validation(manifest: Manifest) -> None:
    frame = synthetic.generate(300, seed=1)[synthetic.FEATURE_NAMES]
    rows = frame.to_dict(orient="records")
    rows[7]["river_level_m"] = float("nan")

    result = validate_rows(manifest, rows)

    assert result.errors == [(7, "river_level_m", "must be a finite number")]
    assert 7 not in result.valid_index
    assert np.array_equal(result.matrix[0], validate_inputs(manifest, rows[0]))
    assert np.array_equal(result.matrix, frame.drop(index=7).to_numpy(dtype=np.float64))


# --- hard limits ------------------------------------------------------------------------------


def test_values_past_a_hard_limit_are_refused_naming_the_limit(manifest: Manifest) -> None:
    inputs = typical_inputs() | {"soil_moisture_pct": 150, "snowmelt_mm": -40, "slope_deg": 90}

    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest, inputs)

    assert caught.value.fields == {
        "soil_moisture_pct": "must be between 0 and 100 % (hard limit)",
        "snowmelt_mm": "must be between 0 and 1000 mm (hard limit)",
    }


def test_rows_and_csv_frames_refuse_values_past_a_hard_limit(manifest: Manifest) -> None:
    frame = synthetic.generate(5, seed=2)[synthetic.FEATURE_NAMES]
    frame.loc[1, "river_level_m"] = -999999.0
    frame.loc[3, "rainfall_24h_mm"] = 1e30
    expected = [
        (1, "river_level_m", "must be between -10 and 100 m (hard limit)"),
        (3, "rainfall_24h_mm", "must be between 0 and 2000 mm (hard limit)"),
    ]

    plain = validate_rows(manifest, frame.to_dict(orient="records"))
    mixed = validate_rows(manifest, frame.astype(str).to_dict(orient="records"))
    csv_frame = validate_frame(manifest, frame)

    for checked in (plain, mixed, csv_frame):
        assert checked.errors == expected
        assert checked.valid_index.tolist() == [0, 2, 4]


def test_a_manifest_without_hard_limits_still_loads_and_refuses_nothing(
    manifest: Manifest,
) -> None:
    data = manifest.to_dict()
    assert data["features"][0]["hard_minimum"] == 0.0
    for feature in data["features"]:
        del feature["hard_minimum"], feature["hard_maximum"]  # as written before they existed

    old = Manifest.from_dict(json.loads(json.dumps(data)))

    assert not any(spec.has_hard_limits for spec in old.features)
    values = validate_inputs(old, typical_inputs() | {"soil_moisture_pct": 150})
    assert values[old.feature_names.index("soil_moisture_pct")] == 150.0
    assert Manifest.from_dict(manifest.to_dict()).features == manifest.features


def test_one_sided_limits_read_as_such_and_a_typical_range_past_them_is_refused() -> None:
    spec = FeatureSpec("depth_m", "float", "m", 0.0, 5.0, "d", 1.0, "g", hard_minimum=0.0)
    assert spec.hard_limit_reason() == "must be at least 0 m (hard limit)"
    assert FeatureSpec("t", "int", "", 0, 9, "t", 1, "g", hard_maximum=12).hard_limit_text() == (
        "at most 12"
    )
    with pytest.raises(SchemaError, match="outside its hard limits"):
        FeatureSpec("pct", "float", "%", 0.0, 120.0, "p", 1.0, "g", 0.0, 100.0)


def test_every_synthetic_feature_has_limits_that_hold_its_generated_data() -> None:
    frame = synthetic.generate(20_000, seed=5)
    for spec in synthetic.FEATURES:
        assert spec.hard_minimum is not None and spec.hard_maximum is not None, spec.name
        assert not any(spec.outside_hard_limits(v) for v in (frame[spec.name].min(), spec.default))


SOIL = FeatureSpec(
    "soil_type",
    "int",
    "",
    1.0,
    3.0,
    "Soil under the site.",
    1.0,
    "Terrain",
    kind="category",
    categories=((1, "clay"), (2, "sand"), (3, "loam")),
    scope="place",
)


def soil_manifest() -> Manifest:
    return Manifest(
        name="soil",
        features=[*synthetic.FEATURES[:2], SOIL],
        target=synthetic.TARGET,
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=list(DEFAULT_RISK_BANDS),
        algorithm="hgb",
    )


def test_a_manifest_without_kinds_loads_with_the_kind_its_dtype_gives() -> None:
    old = {key: value for key, value in synthetic.FEATURES[-1].to_dict().items()}
    for key in ("kind", "scope", "categories", "period"):
        old.pop(key)

    spec = FeatureSpec.from_dict(old)

    assert (spec.kind, spec.scope, spec.categories, spec.period) == ("integer", None, (), None)
    assert FeatureSpec.from_dict({**old, "dtype": "float"}).kind == "number"


def test_kind_scope_categories_and_period_round_trip_through_the_manifest() -> None:
    manifest = soil_manifest()

    again = Manifest.from_dict(json.loads(json.dumps(manifest.to_dict())))

    assert again.features[-1] == SOIL
    assert again.features[-1].category_labels == {1: "clay", 2: "sand", 3: "loam"}
    assert again.features[-1].to_dict()["categories"][0] == {"code": 1, "label": "clay"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": "colour"}, "has kind 'colour'"),
        ({"scope": "planet"}, "has scope 'planet'"),
        ({"categories": ()}, "no categories"),
        ({"categories": ((1, "clay"), (1, "sand"))}, "not distinct"),
        ({"default": 7.0}, "default 7, which is not one of its codes"),
        ({"dtype": "float"}, "its dtype is 'float'"),
        ({"period": 12.0}, "has a period but its kind is category"),
        ({"kind": "cyclic", "categories": ()}, "cyclic without a positive period"),
    ],
)
def test_an_inconsistent_kind_is_refused_naming_the_feature(changes, reason) -> None:
    fields = {**SOIL.to_dict(), **changes}
    fields["categories"] = changes.get("categories", SOIL.categories)

    with pytest.raises(SchemaError, match=reason) as caught:
        FeatureSpec(**fields)

    assert "soil_type" in caught.value.fields


def test_a_code_outside_the_list_is_refused_everywhere_naming_the_field() -> None:
    manifest = soil_manifest()
    good = {"rainfall_24h_mm": 3.0, "rainfall_72h_mm": 20.0, "soil_type": 2}
    reason = "must be one of the codes 1 (clay), 2 (sand), 3 (loam)"

    assert validate_inputs(manifest, good).tolist() == [3.0, 20.0, 2.0]
    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest, {**good, "soil_type": 4})
    assert caught.value.fields == {"soil_type": reason}
    assert "soil_type: must be one of the codes" in caught.value.message

    rows = validate_rows(manifest, [good, {**good, "soil_type": 0}, {**good, "soil_type": "5"}])
    assert rows.errors == [(1, "soil_type", reason), (2, "soil_type", reason)]
    assert rows.valid_index.tolist() == [0]

    frame = pd.DataFrame([good, {**good, "soil_type": 9}, {**good, "soil_type": 3}])
    checked = validate_frame(manifest, frame)
    assert checked.errors == [(1, "soil_type", reason)]
    assert checked.valid_index.tolist() == [0, 2]


def test_a_month_outside_its_hard_limits_is_refused() -> None:
    month = FeatureSpec(
        "month",
        "int",
        "",
        1,
        12,
        "Month.",
        6,
        "When",
        hard_minimum=1,
        hard_maximum=12,
        kind="cyclic",
        period=12,
        scope="moment",
    )
    manifest = Manifest(
        name="m",
        features=[month],
        target="flooded",
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=list(DEFAULT_RISK_BANDS),
    )

    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest, {"month": 13})

    assert caught.value.fields == {"month": "must be between 1 and 12 (hard limit)"}


def test_place_features_are_those_the_schema_marks_as_describing_the_place(
    manifest: Manifest,
) -> None:
    names = [spec.name for spec in place_features(manifest)]
    assert "elevation_m" in names and "slope_deg" in names
    assert "rainfall_24h_mm" not in names
    assert names == [spec.name for spec in manifest.features if spec.name in names]


def test_some_place_values_are_checked_and_blanks_left_out(manifest: Manifest) -> None:
    specs = place_features(manifest)
    clean, problems = validate_some(
        specs,
        {
            "elevation_m": "12.5",
            "slope_deg": None,
            "historical_flood_count": 2.5,
            "vegetation_cover_pct": 130,
            "rainfall_24h_mm": 4,
            "colour": "red",
        },
    )
    assert clean == {"elevation_m": 12.5}
    assert problems == {
        "historical_flood_count": "must be a whole number",
        "vegetation_cover_pct": "must be between 0 and 100 % (hard limit)",
        "rainfall_24h_mm": "unknown feature",
        "colour": "unknown feature",
    }
