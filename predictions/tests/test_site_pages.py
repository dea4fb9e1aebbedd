"""The site pages and the prediction form's site picker, as an analyst uses them."""

from __future__ import annotations

import html
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from predictions.models import Prediction, Site
from predictions.sites import site_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_an_analyst_registers_a_site_and_finds_it(browser, production_model):
    page = browser.get(reverse("site_new"))
    assert page.status_code == 200 and "Elevation" in page.content.decode()
    response = browser.post(
        reverse("site_new"),
        {"code": "VIL-3", "name": "Lowmoor village", "latitude": "50.2", "longitude": "-3.9",
         "place_elevation_m": "6", "place_slope_deg": ""},
    )  # fmt: skip
    assert response.status_code == 302
    site = Site.objects.get(code="VIL-3")
    assert site.features == {"elevation_m": 6.0} and site.latitude == 50.2
    listed = browser.get(reverse("sites"), {"q": "lowmoor"}).content.decode()
    assert "VIL-3" in listed and "Lowmoor village" in listed


def test_the_form_names_what_is_wrong_and_registers_nothing(browser, production_model, user):
    site_create(user=user, code="VIL-3", name="Existing")
    response = browser.post(
        reverse("site_new"),
        {"code": "VIL-3", "name": "Again", "latitude": "95", "place_slope_deg": "120"},
    )
    assert response.status_code == 400
    text = html.unescape(response.content.decode())
    assert "Ensure this value is less than or equal to 90" in text
    response = browser.post(
        reverse("site_new"), {"code": "VIL-3", "name": "Again", "place_slope_deg": "120"}
    )
    text = html.unescape(response.content.decode())
    assert "a site with code 'VIL-3' already exists" in text
    assert "must be between 0 and 90" in text
    assert Site.objects.count() == 1


def test_an_edit_keeps_the_code_and_changes_the_values(browser, production_model, user):
    site_create(user=user, code="G-1", name="Gauge", features={"elevation_m": 3})
    url = reverse("site_edit", kwargs={"code": "G-1"})
    assert 'value="3"' in browser.get(url).content.decode()
    response = browser.post(url, {"name": "Gauge 1", "place_elevation_m": "4.5", "code": "X"})
    assert response.status_code == 302
    site = Site.objects.get()
    assert (site.code, site.name, site.features) == ("G-1", "Gauge 1", {"elevation_m": 4.5})
    assert browser.get(reverse("site_edit", kwargs={"code": "NOPE"})).status_code == 404


def test_the_site_search_offers_matching_sites_with_their_values(browser, production_model, user):
    site_create(user=user, code="G-1", name="Mill gauge", features={"elevation_m": 3})
    site_create(user=user, code="H-2", name="Harbour")
    options = browser.get(reverse("site_options"), {"site": "mill"}).content.decode()
    assert 'value="G-1"' in options and "H-2" not in options
    assert "&quot;elevation_m&quot;: 3" in options
    assert browser.get(reverse("site_options"), {"site": ""}).content.decode().strip() == ""


def test_predicting_for_a_site_takes_its_place_values(browser, production_model, user):
    site_create(user=user, code="G-1", name="Mill gauge", features={"elevation_m": 3.25})
    form = browser.get(reverse("predict"), {"site": "G-1"}).content.decode()
    assert 'value="G-1"' in form and 'value="3.25"' in form
    data = {f["name"]: f["default"] for f in production_model.manifest["features"]}
    data.update(site="G-1", elevation_m="", submission=str(uuid.uuid4()))
    response = browser.post(reverse("predict"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Prediction.objects.get()
    assert row.site.code == "G-1" and row.inputs["elevation_m"] == 3.25


def test_an_unknown_site_on_the_form_is_named_next_to_the_field(browser, production_model):
    data = {f["name"]: f["default"] for f in production_model.manifest["features"]}
    data.update(site="NOWHERE", submission=str(uuid.uuid4()))
    response = browser.post(reverse("predict"), data)
    assert response.status_code == 400
    assert "unknown site code 'NOWHERE'" in html.unescape(response.content.decode())
    assert not Prediction.objects.exists()


def test_admin_registers_and_checks_sites(admin_user, production_model):
    client = Client()
    client.force_login(admin_user)
    url = reverse("admin:predictions_site_add")
    refused = client.post(
        url,
        {"code": "ADM-1", "name": "Admin site", "latitude": "100", "features": '{"slope_deg": 95}'},
    )
    assert refused.status_code == 200
    text = html.unescape(refused.content.decode())
    assert "features.slope_deg: must be between 0 and 90" in text
    assert "latitude: must be between -90 and 90" in text
    assert not Site.objects.exists()
    added = client.post(
        url, {"code": "ADM-1", "name": "Admin site", "features": '{"slope_deg": 9}'}
    )
    assert added.status_code == 302
    site = Site.objects.get()
    assert site.features == {"slope_deg": 9.0} and site.created_by == admin_user
