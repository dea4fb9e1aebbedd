"""`/api/v1/sites/` and predictions for a site with a context, as a program sees them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory, make_auditor, token_for
from predictions.models import Prediction, Site

pytestmark = pytest.mark.django_db

PLACE_NAMES = {
    "distance_to_river_m",
    "upstream_catchment_km2",
    "elevation_m",
    "slope_deg",
    "drainage_density_km_per_km2",
    "groundwater_depth_m",
    "impervious_surface_pct",
    "vegetation_cover_pct",
    "historical_flood_count",
}


def register(api, code="ST-1", **extra):
    return api.post(
        "/api/v1/sites/", {"code": code, "name": f"Station {code}", **extra}, format="json"
    )


def test_a_site_is_registered_read_and_changed(api, production_model):
    created = register(api, latitude=52.1, longitude=4.3, features={"elevation_m": 2.5})
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["code"] == "ST-1" and body["features"] == {"elevation_m": 2.5}
    assert created["Location"].endswith("/api/v1/sites/ST-1/")
    changed = api.patch("/api/v1/sites/ST-1/", {"name": "Harbour", "notes": "moved"}, format="json")
    assert changed.status_code == 200
    read = api.get("/api/v1/sites/ST-1/").json()
    assert (read["name"], read["notes"], read["latitude"]) == ("Harbour", "moved", 52.1)


def test_bad_sites_get_a_400_naming_the_field(api, production_model):
    register(api)
    cases = [
        ({"code": "ST-1", "name": "again"}, "code", "already exists"),
        ({"code": "ST-2", "name": "x", "latitude": 95}, "latitude", "90"),
        ({"code": "ST-3", "name": "x", "longitude": -181}, "longitude", "-180"),
        ({"code": "ST 4", "name": "x"}, "code", ""),
        ({"code": "ST-5", "name": "x", "features": {"slope_deg": -1}}, "features.slope_deg",
         "hard limit"),
        ({"code": "ST-6", "name": "x", "features": {"rainfall_24h_mm": 1}},
         "features.rainfall_24h_mm", "not a place feature"),
    ]  # fmt: skip
    for data, field, words in cases:
        response = api.post("/api/v1/sites/", data, format="json")
        assert response.status_code == 400, (data, response.content)
        assert words in response.json()["error"]["fields"][field], response.json()
    assert list(Site.objects.values_list("code", flat=True)) == ["ST-1"]
    refused = api.patch("/api/v1/sites/ST-1/", {"code": "NEW"}, format="json")
    assert refused.status_code == 400 and "code" in refused.json()["error"]["fields"]
    assert api.get("/api/v1/sites/NOPE/").status_code == 404


def test_the_register_is_searched_and_paged_in_code_order(api, production_model):
    for code in ("C-3", "A-1", "B-2"):
        register(api, code)
    register(api, "D-4", name="Mill Weir")
    found = api.get("/api/v1/sites/", {"search": "weir"}).json()
    assert [s["code"] for s in found["results"]] == ["D-4"]
    first = api.get("/api/v1/sites/", {"limit": 2}).json()
    assert [s["code"] for s in first["results"]] == ["A-1", "B-2"]
    second = api.get(first["next"]).json()
    assert [s["code"] for s in second["results"]] == ["C-3", "D-4"]
    assert second["next"] is None
    assert api.get("/api/v1/sites/", {"limit": 0}).status_code == 400


def test_auditors_read_the_register_but_do_not_change_it(api, production_model):
    register(api)
    auditor = make_auditor(UserFactory(username="aud"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(auditor)}")
    assert client.get("/api/v1/sites/").status_code == 200
    refused = register(client, "ST-9")
    assert refused.status_code == 403
    assert refused.json()["error"]["fields"] == {"permission": "predictions.add_site"}
    assert client.patch("/api/v1/sites/ST-1/", {"name": "x"}, format="json").status_code == 403


def test_a_prediction_names_its_site_and_sends_only_the_moment(
    api, production_model, typical_inputs
):
    place = {name: typical_inputs[name] for name in PLACE_NAMES}
    register(api, features={**place, "elevation_m": 1.0})
    moment = {k: v for k, v in typical_inputs.items() if k not in PLACE_NAMES}
    response = api.post(
        "/api/v1/predictions/",
        {"inputs": moment, "site": "ST-1", "context": {"station": "0042", "year": 2024}},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["site"] == "ST-1"
    assert body["context"] == {"station": "0042", "year": 2024}
    assert body["inputs"]["elevation_m"] == 1.0
    row = Prediction.objects.get(pk=body["id"])
    assert row.site.code == "ST-1" and row.context["station"] == "0042"
    assert api.get(f"/api/v1/predictions/{row.pk}/").json()["site"] == "ST-1"
    plain = api.post("/api/v1/predictions/", {"inputs": typical_inputs}, format="json").json()
    assert (plain["site"], plain["context"]) == (None, None)


def test_an_unknown_site_or_an_oversized_context_is_a_400_naming_it(
    api, production_model, typical_inputs, settings
):
    unknown = api.post(
        "/api/v1/predictions/", {"inputs": typical_inputs, "site": "GHOST"}, format="json"
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["fields"] == {"site": "unknown site code 'GHOST'"}
    settings.CONTEXT_MAX_BYTES = 30
    big = api.post(
        "/api/v1/predictions/",
        {"inputs": typical_inputs, "context": {"note": "x" * 40}},
        format="json",
    )
    assert big.status_code == 400
    assert "CONTEXT_MAX_BYTES" in big.json()["error"]["fields"]["context"]
    nested = api.post(
        "/api/v1/predictions/", {"inputs": typical_inputs, "context": {"a": [1]}}, format="json"
    )
    assert nested.status_code == 400 and "context.a" in nested.json()["error"]["fields"]
    assert not Prediction.objects.exists()


def test_the_openapi_document_describes_site_and_context(api, production_model):
    document = api.get("/api/schema/?format=json").json()
    create = document["components"]["schemas"]["PredictionCreateInputRequest"]["properties"]
    assert "site" in create and "context" in create
    assert "CONTEXT_MAX_BYTES" in create["context"]["description"]
    assert "/api/v1/sites/" in document["paths"] and "/api/v1/sites/{code}/" in document["paths"]
