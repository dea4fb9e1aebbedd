"""Tests for feature specs from a schema file (YAML or JSON) and from the training data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from mlcore.engine import feature_schema, synthetic
from mlcore.engine.errors import DataError, SchemaError
from mlcore.engine.schema import DEFAULT_RISK_BANDS, Manifest, validate_inputs

SCHEMA_YAML = """\
features:
  rain_mm:
    unit: mm
    description: Rain over the month at the gauge.
    kind: number
    scope: moment
    hard_minimum: 0
    hard_maximum: 3000
    typical_maximum: 400
  month:
    kind: cyclic
    period: 12
    hard_minimum: 1
    hard_maximum: 12
    scope: moment
  soil:
    kind: category
    categories: {1: clay, 2: sand, 3: loam}
    scope: place
    group: Ground
"""


def records() -> pd.DataFrame:
    frame = synthetic.generate_field_records(stations=6, years=5, seed=4)
    frame["soil"] = frame["station_no"] % 3 + 1
    return frame


def manifest_of(specs) -> Manifest:
    return Manifest(
        name="m",
        features=list(specs),
        target="flooded",
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=list(DEFAULT_RISK_BANDS),
    )


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_schema_file_gives_units_descriptions_limits_kinds_and_scopes(tmp_path, suffix) -> None:
    path = tmp_path / f"schema.{suffix}"
    content = yaml.safe_load(SCHEMA_YAML)
    path.write_text(SCHEMA_YAML if suffix == "yaml" else json.dumps(content))
    frame = records()
    report: list[str] = []

    schema = feature_schema.read_schema_file(path)
    rain, month, soil, river = feature_schema.features_from_frame(
        frame,
        ["rain_mm", "month", "soil", "river_level_m"],
        known=synthetic.FEATURES,
        schema=schema,
        columns=list(frame.columns),
        report=report,
    )

    assert (rain.unit, rain.description, rain.kind, rain.scope) == (
        "mm",
        "Rain over the month at the gauge.",
        "number",
        "moment",
    )
    assert (rain.hard_minimum, rain.hard_maximum, rain.maximum) == (0.0, 3000.0, 400.0)
    assert rain.minimum == pytest.approx(frame["rain_mm"].quantile(0.001))
    assert (month.kind, month.period, month.hard_minimum, month.hard_maximum) == (
        "cyclic",
        12.0,
        1.0,
        12.0,
    )
    assert soil.kind == "category" and soil.dtype == "int" and soil.group == "Ground"
    assert soil.category_labels == {1: "clay", 2: "sand", 3: "loam"}
    assert (soil.scope, soil.minimum, soil.maximum) == ("place", 1.0, 3.0)
    assert river == synthetic.FEATURES[3]  # no entry: the curated spec
    assert report[0] == "feature metadata from the schema file for rain_mm, month, soil"
    # A negative rainfall is refused only because the file gives a hard limit.
    with pytest.raises(SchemaError) as caught:
        validate_inputs(manifest_of([rain]), {"rain_mm": -1})
    assert caught.value.fields == {"rain_mm": "must be between 0 and 3000 mm (hard limit)"}


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("features:\n  month: {kind: colour}\n", "month.kind", "'colour' is not one of"),
        ("features:\n  month: {units: mm}\n", "month.units", "unknown key"),
        (
            "features:\n  rain_mm: {hard_minimum: 10, hard_maximum: 0}\n",
            "rain_mm.hard_minimum",
            "10 is above hard_maximum 0",
        ),
        ("features:\n  rain_mm: {typical_maximum: lots}\n", "rain_mm.typical_maximum", "number"),
        ("features:\n  soil: {kind: category}\n", "soil.categories", "needs its codes"),
        ("features:\n  soil: {kind: category, categories: {a: clay}}\n", "soil.categories", "code"),
        ("features:\n  month: {kind: cyclic, period: 0}\n", "month.period", "above 0"),
        ("features:\n  rain_mm: {period: 12}\n", "rain_mm.period", "only a feature of kind"),
        ("features:\n  month: [1, 2]\n", "month", "must be a mapping"),
        ("features:\n  month: {kind: cyclic\n", "schema", "not valid YAML"),
        ("colour: blue\n", "schema", "one key, 'features'"),
    ],
)
def test_a_bad_schema_file_is_refused_naming_the_feature_and_key(tmp_path, text, field, words):
    path = tmp_path / "schema.yaml"
    path.write_text(text)

    with pytest.raises(DataError) as caught:
        feature_schema.read_schema_file(path)

    assert field in caught.value.fields
    assert words in caught.value.message
    assert "schema.yaml" in caught.value.message


def test_a_bad_json_schema_file_says_where(tmp_path) -> None:
    path = tmp_path / "schema.json"
    path.write_text('{"features": {"month": {"kind": "cyclic",}}}')

    with pytest.raises(DataError, match=r"schema file 'schema.json' is not valid JSON: .*line 1"):
        feature_schema.read_schema_file(path)


def test_schema_entries_must_name_columns_of_the_data_and_fit_their_values() -> None:
    frame = records()
    features = ["rain_mm", "month"]
    columns = list(frame.columns)

    def specs_for(text: str, warnings: list[str] | None = None):
        schema = feature_schema.parse_schema(yaml.safe_load(text), label="schema.yaml")
        return feature_schema.features_from_frame(
            frame, features, schema=schema, columns=columns, warnings=warnings
        )

    with pytest.raises(DataError, match=r"names column.s. the data does not have: rainfall"):
        specs_for("features:\n  rainfall: {unit: mm}\n")
    with pytest.raises(DataError, match=r"'rain_mm' has .* outside the hard limits") as caught:
        specs_for("features:\n  rain_mm: {hard_maximum: 10}\n")
    assert caught.value.fields == {"rain_mm": "values the schema file rules out"}
    with pytest.raises(DataError, match=r"'month' has .* outside the codes"):
        specs_for("features:\n  month: {kind: category, categories: {1: jan, 2: feb}}\n")
    with pytest.raises(DataError, match="says 'rain_mm' is of kind integer, but the column holds"):
        specs_for("features:\n  rain_mm: {kind: integer}\n")
    warnings: list[str] = []
    specs_for("features:\n  year: {unit: a}\n", warnings)
    assert warnings == [
        "the schema file describes year, which the model does not use as features; those "
        "entries are ignored"
    ]


def test_without_a_file_a_month_column_is_cyclic_and_month_13_is_refused() -> None:
    frame = records()
    report: list[str] = []

    (month,) = feature_schema.features_from_frame(frame, ["month"], report=report)

    assert (month.kind, month.period, month.dtype) == ("cyclic", 12.0, "int")
    assert (month.hard_minimum, month.hard_maximum) == (1.0, 12.0)
    assert (month.minimum, month.maximum) == (1.0, 12.0)
    assert "read month as a month: cyclic, 1 to 12" in report
    manifest = manifest_of([month])
    assert validate_inputs(manifest, {"month": 12}).tolist() == [12.0]
    with pytest.raises(SchemaError, match="month: must be between 1 and 12"):
        validate_inputs(manifest, {"month": 13})


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("month", [0, 3, 5, 11], "integer"),  # a zero: not months numbered 1-12
        ("month", [1.5, 3.0, 4.0], "number"),
        ("monthly_total", [1, 3, 5, 11], "integer"),
        ("start_month", [1, 3, 5, 12], "cyclic"),
    ],
)
def test_only_a_whole_number_column_named_like_a_month_in_1_to_12_is_cyclic(name, values, kind):
    frame = pd.DataFrame({name: values})

    (spec,) = feature_schema.features_from_frame(frame, [name])

    assert spec.kind == kind


@pytest.mark.parametrize("seed", range(5))
def test_an_inferred_typical_range_never_reaches_past_what_the_data_showed(seed) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "level": rng.normal(0, 3, 400),
            "count": rng.poisson(4, 400),
            "month": rng.integers(3, 10, 400),  # a dry-season file: March to September
            "gauge": np.r_[rng.normal(5, 1, 399), 900.0],
        }
    )

    specs = feature_schema.features_from_frame(frame, list(frame.columns))

    for spec in specs:
        assert frame[spec.name].min() <= spec.minimum <= spec.maximum <= frame[spec.name].max()
    month = specs[2]
    assert (month.minimum, month.maximum) == (3.0, 9.0)  # not 1-12, and never 0-14


def test_without_a_file_negative_values_are_scored_not_refused() -> None:
    frame = records()

    (rain,) = feature_schema.features_from_frame(frame, ["rain_mm"], known=synthetic.FEATURES)

    assert not rain.has_hard_limits and rain.unit == ""
    assert validate_inputs(manifest_of([rain]), {"rain_mm": -5}).tolist() == [-5.0]


def test_features_from_frame_reuses_known_specs_and_infers_the_rest() -> None:
    frame = synthetic.generate(2_000, seed=1).rename(columns={"slope_deg": "gradient"})
    names = ["rainfall_24h_mm", "gradient", "historical_flood_count"]
    known = [spec for spec in synthetic.FEATURES if spec.name != "historical_flood_count"]

    specs = feature_schema.features_from_frame(frame, names, known=known)

    assert specs[0] == synthetic.FEATURES[0]
    gradient, count = specs[1], specs[2]
    assert gradient.dtype == "float" and gradient.unit == ""
    assert gradient.minimum == pytest.approx(frame["gradient"].quantile(0.001))
    assert gradient.maximum == pytest.approx(frame["gradient"].quantile(0.999))
    assert gradient.default == pytest.approx(frame["gradient"].median())
    assert count.dtype == "int"
    assert count.default == round(frame["historical_flood_count"].median())


def test_csv_columns_get_hard_limits_only_from_a_curated_spec_that_fits_them() -> None:
    frame = synthetic.generate(2_000, seed=1).rename(columns={"slope_deg": "gradient"})
    frame["snowmelt_mm"] = frame["snowmelt_mm"] - 50  # not what snowmelt_mm usually means
    report: list[str] = []

    specs = feature_schema.features_from_frame(
        frame,
        ["rainfall_24h_mm", "gradient", "snowmelt_mm"],
        known=synthetic.FEATURES,
        report=report,
    )

    rain, gradient, snowmelt = specs
    assert (rain.hard_minimum, rain.hard_maximum) == (0.0, 2000.0)
    # Nothing in a CSV says what is possible: no limits are guessed from the data.
    assert not gradient.has_hard_limits
    assert (
        not snowmelt.has_hard_limits and snowmelt.description == synthetic.FEATURES[2].description
    )
    assert report == [
        "no hard limits for gradient, snowmelt_mm (its values are not between 0 and 1000 mm): "
        "nothing says which values are possible, so none are refused; values outside the "
        "typical range are flagged"
    ]
