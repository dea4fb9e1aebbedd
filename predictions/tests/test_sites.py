"""The site register and predictions for a site, through the services."""

from __future__ import annotations

import pytest

from floodsite.exceptions import ApplicationError
from predictions.models import Prediction, Site, Source
from predictions.services import prediction_create, prediction_create_many
from predictions.sites import site_create, site_list, site_update

pytestmark = pytest.mark.django_db

PLACE = {
    "distance_to_river_m": 120.0,
    "upstream_catchment_km2": 900.0,
    "elevation_m": 4.0,
    "slope_deg": 0.5,
    "drainage_density_km_per_km2": 1.5,
    "groundwater_depth_m": 1.0,
    "impervious_surface_pct": 60.0,
    "vegetation_cover_pct": 10.0,
    "historical_flood_count": 7,
}


def moment(typical_inputs: dict) -> dict:
    return {name: value for name, value in typical_inputs.items() if name not in PLACE}


@pytest.fixture
def gauge(production_model, analyst) -> Site:
    return site_create(
        user=analyst,
        code="GAUGE-7",
        name="Lower Weir gauge",
        latitude=51.5,
        longitude=-0.12,
        notes="Bank-side, read daily.",
        features=PLACE,
    )


def error_of(call, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call(**kwargs)
    return caught.value


def test_a_site_is_registered_with_its_place_values(gauge, analyst):
    stored = Site.objects.get(code="GAUGE-7")
    assert stored.name == "Lower Weir gauge"
    assert (stored.latitude, stored.longitude) == (51.5, -0.12)
    assert stored.features["elevation_m"] == 4.0
    assert stored.created_by == analyst


def test_bad_site_values_are_refused_naming_each_field(gauge, analyst):
    error = error_of(
        site_create,
        user=analyst,
        code="GAUGE-7",
        name=" ",
        latitude=91,
        longitude="east",
        features={"slope_deg": 95, "rainfall_24h_mm": 3},
    )
    assert error.status_code == 400
    assert error.fields == {
        "code": "a site with code 'GAUGE-7' already exists",
        "name": "required",
        "latitude": "must be between -90 and 90 (decimal degrees)",
        "longitude": "must be a number",
        "features.slope_deg": "must be between 0 and 90 ° (hard limit)",
        "features.rainfall_24h_mm": "not a place feature of the production model",
    }
    assert Site.objects.count() == 1
    bad_code = error_of(site_create, user=analyst, code="two words", name="x")
    assert set(bad_code.fields) == {"code"}


def test_an_edit_changes_the_values_but_never_the_code(gauge):
    site_update(site=gauge, changes={"name": "Upper Weir", "latitude": None, "notes": ""})
    gauge.refresh_from_db()
    assert (gauge.name, gauge.latitude, gauge.code) == ("Upper Weir", None, "GAUGE-7")
    error = error_of(site_update, site=gauge, changes={"code": "OTHER", "longitude": 200})
    assert set(error.fields) == {"code"}
    error = error_of(site_update, site=gauge, changes={"longitude": 200})
    assert error.fields == {"longitude": "must be between -180 and 180 (decimal degrees)"}


def test_search_finds_by_code_prefix_or_name_in_code_order(gauge, analyst):
    site_create(user=analyst, code="A-1", name="Weir Lane")
    site_create(user=analyst, code="B-2", name="Mill")
    assert [s.code for s in site_list(search="weir")] == ["A-1", "GAUGE-7"]
    assert [s.code for s in site_list(search="gau")] == ["GAUGE-7"]
    assert [s.code for s in site_list(after="A-1")] == ["B-2", "GAUGE-7"]


def test_a_prediction_for_a_site_needs_only_the_moment(gauge, analyst, typical_inputs):
    row = prediction_create(
        user=analyst, source=Source.API, inputs=moment(typical_inputs), site_code="GAUGE-7"
    )
    stored = Prediction.objects.get(pk=row.pk)
    assert stored.site == gauge
    assert stored.inputs["elevation_m"] == 4.0
    assert stored.inputs["rainfall_24h_mm"] == typical_inputs["rainfall_24h_mm"]


def test_a_place_value_typed_over_the_sites_is_kept_on_the_row_only(gauge, analyst, typical_inputs):
    row = prediction_create(
        user=analyst,
        source=Source.WEB,
        inputs={**moment(typical_inputs), "elevation_m": 30.0},
        site_code="GAUGE-7",
    )
    assert Prediction.objects.get(pk=row.pk).inputs["elevation_m"] == 30.0
    gauge.refresh_from_db()
    assert gauge.features["elevation_m"] == 4.0


def test_an_unknown_site_is_refused_naming_it_and_nothing_is_written(
    production_model, analyst, typical_inputs
):
    error = error_of(
        prediction_create, user=analyst, source=Source.API, inputs=typical_inputs,
        site_code="NOWHERE",
    )  # fmt: skip
    assert error.status_code == 400
    assert error.fields == {"site": "unknown site code 'NOWHERE'"}
    assert not Prediction.objects.exists()


def test_a_place_value_the_site_lacks_must_be_given(production_model, analyst, typical_inputs):
    site_create(user=analyst, code="BARE", name="No values yet")
    error = error_of(
        prediction_create, user=analyst, source=Source.API, inputs=moment(typical_inputs),
        site_code="BARE",
    )  # fmt: skip
    assert error.fields["inputs.elevation_m"] == "required: site 'BARE' has no value for it"


def test_context_is_kept_on_the_row_within_its_limits(production_model, analyst, typical_inputs):
    context = {"station": "ST-0042", "year": 2024, "checked": True, "note": None}
    row = prediction_create(user=analyst, source=Source.API, inputs=typical_inputs, context=context)
    assert Prediction.objects.get(pk=row.pk).context == context
    plain = prediction_create(user=analyst, source=Source.API, inputs=typical_inputs)
    assert Prediction.objects.get(pk=plain.pk).context is None


def test_context_past_its_limits_is_refused_naming_the_reason(
    production_model, analyst, typical_inputs, settings
):
    settings.CONTEXT_MAX_KEYS = 2
    settings.CONTEXT_MAX_BYTES = 40
    cases = {
        "many": ({"a": 1, "b": 2, "c": 3}, "context", "at most 2 entries (CONTEXT_MAX_KEYS)"),
        "long": ({"a": "x" * 50}, "context", "at most 40 (CONTEXT_MAX_BYTES)"),
        "nested": ({"a": {"b": 1}}, "context.a", "must be text, a number"),
    }
    for context, field, reason in cases.values():
        error = error_of(
            prediction_create, user=analyst, source=Source.API, inputs=typical_inputs,
            context=context,
        )  # fmt: skip
        assert error.status_code == 400
        assert reason in error.fields[field]
    assert not Prediction.objects.exists()


def test_many_instances_share_one_site_and_context(gauge, analyst, typical_inputs):
    rows = prediction_create_many(
        user=analyst,
        source=Source.API,
        instances=[moment(typical_inputs), {**moment(typical_inputs), "slope_deg": 9}],
        site_code="GAUGE-7",
        context={"run": "r1"},
    )
    stored = Prediction.objects.filter(pk__in=[r.pk for r in rows])
    assert {(p.site_id, p.context["run"]) for p in stored} == {(gauge.pk, "r1")}
    assert sorted(p.inputs["slope_deg"] for p in stored) == [0.5, 9.0]


def test_the_history_export_carries_the_site_and_the_context(gauge, user, typical_inputs):
    import csv
    import io

    from django.test import Client
    from django.urls import reverse

    prediction_create(
        user=user, source=Source.WEB, inputs=moment(typical_inputs), site_code="GAUGE-7",
        context={"station": "=007"},
    )  # fmt: skip
    prediction_create(user=user, source=Source.WEB, inputs=typical_inputs)
    client = Client()
    client.force_login(user)
    response = client.get(reverse("history_export"))
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["site"], r["context"]) for r in rows] == [
        ("", ""),
        ("GAUGE-7", '{"station": "=007"}'),
    ]
