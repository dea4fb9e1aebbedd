"""The site map in a real browser: Leaflet from the site's own static files, under the CSP,
one marker per located site in its band's colour, and a marker's popup leading to the site."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from mlcore.engine.schema import Manifest
from predictions.models import Prediction, Site, Source
from predictions.site_risk_views import NO_BAND_COLOUR


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
