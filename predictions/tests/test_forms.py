"""The prediction form built from a manifest whose features have kinds and maybe no units."""

from __future__ import annotations

import pandas as pd

from mlcore.engine import feature_schema, synthetic
from mlcore.engine.schema import DEFAULT_RISK_BANDS, FeatureSpec, Manifest
from predictions.forms import FeatureUnit, PredictionForm

SOIL = FeatureSpec(
    "soil_type",
    "int",
    "",
    1.0,
    3.0,
    "Soil under the site.",
    2.0,
    "Ground",
    kind="category",
    categories=((1, "clay"), (2, "sand"), (3, "loam")),
)


def csv_manifest() -> Manifest:
    """What train_model makes of a CSV with a month and a level and no schema file, plus a
    category (which only a schema file can give)."""
    frame = pd.DataFrame({"month": [1, 4, 7, 12] * 5, "level": [0.5, 1.0, 2.5, 3.0] * 5})
    inferred = feature_schema.features_from_frame(frame, ["month", "level"])
    return Manifest(
        name="csv",
        features=[*inferred, SOIL],
        target="flooded",
        class_labels=list(synthetic.CLASS_LABELS),
        risk_bands=list(DEFAULT_RISK_BANDS),
    )


def submitted(**values: object) -> dict[str, object]:
    return {"submission": "8e7c5b7e-6f0a-4a35-9d55-7b0d1a6f8a11", **values}


def test_a_feature_without_a_unit_says_no_unit_given() -> None:
    form = PredictionForm(manifest=csv_manifest())

    assert form["level"].help_text.endswith("Typical range 0.5 to 3 (no unit given).")
    field = form.fields["level"]
    assert isinstance(field, FeatureUnit)
    assert field.unit == "no unit given"


def test_a_month_is_a_whole_number_from_1_to_12() -> None:
    form = PredictionForm(manifest=csv_manifest(), data=submitted(month=13, level=1, soil_type=1))

    html = str(form["month"])
    assert 'type="number"' in html and 'min="1"' in html and 'max="12"' in html
    assert 'step="1"' in html
    assert "A cycle of 12" in form["month"].help_text
    assert not form.is_valid()
    assert form.errors["month"] == ["Must be between 1 and 12 (hard limit)."]


def test_a_category_is_a_select_of_its_labels_that_sends_the_code() -> None:
    manifest = csv_manifest()
    html = str(PredictionForm(manifest=manifest)["soil_type"])

    assert "<select" in html
    assert '<option value="2" selected>sand (2)</option>' in html
    assert '<option value="1">clay (1)</option>' in html
    good = PredictionForm(manifest=manifest, data=submitted(month=3, level=1, soil_type="3"))
    assert good.is_valid(), good.errors
    assert good.inputs()["soil_type"] == 3
    bad = PredictionForm(manifest=manifest, data=submitted(month=3, level=1, soil_type="4"))
    assert not bad.is_valid()
    assert bad.errors["soil_type"] == ["Must be one of the codes 1 (clay), 2 (sand), 3 (loam)."]
