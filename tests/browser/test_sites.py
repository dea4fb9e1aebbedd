"""The site map in a real browser: Leaflet from the site's own static files, under the CSP,
one marker per located site in its band's colour, and a marker's popup leading to the site."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from mlcore.engine import synthetic
from mlcore.engine.schema import Manifest
from predictions.models import Prediction, Site, Source
from predictions.site_risk_views import NO_BAND_COLOUR

# Each starts Chromium against a live server: seconds per test.
pytestmark = pytest.mark.slow


@pytest.fixture
def page_errors(page):
    """Console errors (a CSP violation, a script that failed) and requests to other hosts."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(str(error)))
    return seen


def test_the_map_shows_each_located_site_in_its_band_colour(
    production_model, browser_user, signed_in, page_errors, shot
):
    colours = {
        band.name: band.colour for band in Manifest.from_dict(production_model.manifest).risk_bands
    }
    now = timezone.now()
    latest = {"WEIR": ("severe", 0.91), "MILL": ("low", 0.08), "FORD": ("high", 0.6)}
    for code, lat, lon in (("WEIR", 51.5, -0.1), ("MILL", 51.7, -0.3), ("FORD", 52.0, 0.2)):
        site = Site.objects.create(code=code, name=f"{code} site", latitude=lat, longitude=lon)
        band, probability = latest[code]
        Prediction.objects.create(
            user=browser_user,
            source=Source.API,
            model_version=production_model,
            site=site,
            inputs={},
            probability=probability,
            label="flood" if probability >= 0.5 else "no_flood",
            risk_band=band,
            latency_ms=1.0,
            created_at=now - timedelta(minutes=5),
        )
    Site.objects.create(code="NEW", name="Not predicted yet", latitude=51.9, longitude=-0.5)
    Site.objects.create(code="NOWHERE", name="No coordinates")

    requested: list[str] = []
    signed_in.on("request", lambda request: requested.append(request.url))
    signed_in.goto("/map/")
    expect(signed_in.get_by_role("status")).to_have_text("4 sites with coordinates.")
    markers = signed_in.locator("#site-map path.site-marker")
    expect(markers).to_have_count(4)
    fills = markers.evaluate_all("paths => paths.map(p => p.getAttribute('fill'))")
    assert sorted(fills) == sorted(
        [colours["severe"], colours["low"], colours["high"], NO_BAND_COLOUR]
    )
    assert len(set(fills)) == 4
    # Everything came from this site: Leaflet is served by it, and no tile server is set.
    origin = signed_in.url.split("/map/")[0]
    assert all(url.startswith(origin) for url in requested)
    shot("site-map")

    markers.first.click()
    popup = signed_in.locator(".leaflet-popup-content a")
    expect(popup).to_be_visible()
    popup.click()
    expect(signed_in.get_by_role("heading", level=1)).to_contain_text("site")
    assert "/sites/" in signed_in.url
    assert page_errors == []


PLACE = {
    "distance_to_river_m": "120",
    "upstream_catchment_km2": "900",
    "elevation_m": "4",
    "slope_deg": "0.5",
    "drainage_density_km_per_km2": "1.5",
    "groundwater_depth_m": "1",
    "impervious_surface_pct": "60",
    "vegetation_cover_pct": "10",
    "historical_flood_count": "7",
}


def test_register_a_site_predict_for_it_and_follow_it_over_time(
    production_model, signed_in, page_errors, shot
):
    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sites").click()
    page.get_by_role("link", name="Register a site").click()
    page.get_by_label("Code").fill("WEIR-1")
    page.get_by_label("Name").fill("Lower Weir gauge")
    page.get_by_label("Latitude").fill("51.5")
    page.get_by_label("Longitude").fill("-0.12")
    for name, value in PLACE.items():
        page.locator(f"#id_place_{name}").fill(value)
    page.get_by_role("button", name="Register the site").click()
    expect(page.get_by_role("cell", name="WEIR-1", exact=True)).to_be_visible()
    site = Site.objects.get(code="WEIR-1")
    assert site.features["elevation_m"] == 4

    # The prediction form: type part of the name, pick the site, its place values fill in.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Predict").click()
    page.wait_for_url("**/predict/")
    # htmx binds the search when the document has loaded; typing before that searches nothing
    # (a person cannot type that fast; a test can).
    page.wait_for_load_state("load")
    picker = page.locator("input[list=site-options]")
    picker.fill("WEIR-1")
    expect(page.locator('#site-options option[value="WEIR-1"]')).to_be_attached()
    picker.press("Tab")  # leaving the field commits the choice (the change event)
    expect(page.locator('[name="elevation_m"]')).to_have_value("4")
    expect(page.locator('[name="distance_to_river_m"]')).to_have_value("120")
    page.get_by_label("Rainfall 24h").fill("180")
    page.get_by_role("button", name="Predict flood risk").click()
    expect(page.get_by_role("heading", name=re.compile(r"Flood probability \d+"))).to_be_visible()
    prediction = Prediction.objects.get()
    assert prediction.site_id == site.pk
    assert prediction.inputs["elevation_m"] == 4 and prediction.inputs["rainfall_24h_mm"] == 180
    shot("prediction-for-a-site")

    # From the result to the site's page: the timeline has the one point, the inputs are there.
    page.get_by_role("link", name=re.compile("WEIR-1")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("WEIR-1")
    expect(page.locator("svg.timeline circle.point")).to_have_count(1)
    expect(page.get_by_role("heading", name="Latest inputs")).to_be_visible()
    shot("site-page")
    assert page_errors == []


def test_a_batch_file_with_its_own_columns_gets_them_back_beside_each_answer(
    production_model, browser_user, signed_in, tmp_path
):
    from predictions.models import BatchJob
    from predictions.tests.test_batches import run_job

    Site.objects.create(
        code="MILL", name="Mill Lane", features={k: float(v) for k, v in PLACE.items()}
    )
    moment = (
        synthetic.generate(3, seed=5).drop(columns=["flooded", *PLACE]).round(2).to_dict("records")
    )
    file = tmp_path / "readings.csv"
    with file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["station_id", "site", *moment[0], "year"])
        for number, row in enumerate(moment, start=1):
            writer.writerow([f"ST-{number}", "MILL", *row.values(), 2026])

    page = signed_in
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Batches").click()
    page.get_by_label("CSV file").set_input_files(str(file))
    page.get_by_role("button", name="Upload and score").click()
    page.wait_for_url("**/batches/*/")
    run_job(BatchJob.objects.get())  # what the worker does, in this process
    page.reload()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download results").click()
    results = list(csv.reader(io.StringIO(Path(download_info.value.path()).read_text())))
    header = results[0]
    # The file's own columns come back in its order, beside the answer.
    assert header.index("station_id") < header.index("site") < header.index("year")
    assert "probability" in header and "risk_band" in header
    assert [row[header.index("station_id")] for row in results[1:]] == ["ST-1", "ST-2", "ST-3"]
    assert {row[header.index("year")] for row in results[1:]} == {"2026"}
    assert Prediction.objects.filter(site__code="MILL").count() == 3
