"""Risk at places: the latest answer per site (map, top-risk table), a site's page and timeline."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from accounts.tests.factories import UserFactory
from predictions.models import Outcome, Prediction, Site, Source
from predictions.site_risk import site_risks, site_timeline, sites_top_risk

pytestmark = pytest.mark.django_db


@pytest.fixture
def places(production_model, analyst):
    def site(code, name, lat=None, lon=None):
        return Site.objects.create(code=code, name=name, latitude=lat, longitude=lon)

    return {
        "weir": site("WEIR", "Lower Weir", 51.5, -0.1),
        "mill": site("MILL", "Mill Lane", 51.6, -0.2),
        "ford": site("FORD", "Ford crossing"),  # no coordinates: not on the map
        "dry": site("DRY", "Dry valley", 50.0, 1.0),  # never predicted
    }


@pytest.fixture
def answer(production_model, analyst):
    now = timezone.now()

    def make(site, probability, band, *, hours_ago, user=None, source=Source.API, version=None):
        return Prediction.all_sources.create(
            user=user or analyst,
            source=source,
            model_version=version or production_model,
            site=site,
            inputs={"rainfall_24h_mm": probability * 100},
            probability=probability,
            label="flood" if probability >= 0.5 else "no_flood",
            risk_band=band,
            latency_ms=1.0,
            created_at=now - timedelta(hours=hours_ago),
        )

    return make


def test_each_site_shows_its_latest_prediction_not_its_highest(places, answer):
    answer(places["weir"], 0.92, "severe", hours_ago=30)
    answer(places["weir"], 0.12, "low", hours_ago=2)
    answer(places["mill"], 0.55, "high", hours_ago=5)
    # A what-if is an exploration, not a prediction: never a site's latest answer.
    answer(places["mill"], 0.99, "severe", hours_ago=1, source=Source.WHAT_IF)

    by_code = {risk.code: risk for risk in site_risks()}
    assert (by_code["WEIR"].probability, by_code["WEIR"].risk_band) == (0.12, "low")
    assert (by_code["MILL"].probability, by_code["MILL"].risk_band) == (0.55, "high")
    assert by_code["DRY"].probability is None and by_code["DRY"].risk_band == ""
    assert [risk.code for risk in site_risks(located_only=True)] == ["DRY", "MILL", "WEIR"]

    top = sites_top_risk()
    assert [(risk.code, risk.probability) for risk in top] == [("MILL", 0.55), ("WEIR", 0.12)]


def test_the_dashboard_lists_sites_at_highest_risk_first(client, places, answer, analyst):
    answer(places["weir"], 0.31, "moderate", hours_ago=1)
    answer(places["ford"], 0.87, "severe", hours_ago=3)
    client.force_login(analyst)
    page = client.get(reverse("home")).content.decode()
    table = page.split('id="top-sites-title"')[1].split("</table>")[0]
    assert table.index("FORD") < table.index("WEIR")
    assert "0.870" in table and "0.310" in table
    assert "DRY" not in table  # never predicted: no risk to rank


def test_the_map_data_has_every_located_site_with_its_band_colour(client, places, answer, analyst):
    answer(places["weir"], 0.92, "severe", hours_ago=1)
    client.force_login(analyst)
    data = client.get(reverse("site_map_data")).json()
    by_code = {site["code"]: site for site in data["sites"]}
    assert set(by_code) == {"WEIR", "MILL", "DRY"}  # FORD has no coordinates
    severe = next(band for band in data["bands"] if band["name"] == "severe")
    assert by_code["WEIR"]["colour"] == severe["colour"]
    assert by_code["WEIR"]["url"] == reverse("site_detail", args=["WEIR"])
    assert by_code["MILL"]["risk_band"] == "" and by_code["MILL"]["probability"] is None
    assert by_code["MILL"]["colour"] != severe["colour"]


def test_a_site_page_draws_its_timeline_with_outcomes_and_model_changes(
    client, places, answer, analyst, register_model
):
    newer = register_model(promote=True)
    first = answer(places["weir"], 0.20, "low", hours_ago=48)
    answer(places["weir"], 0.45, "moderate", hours_ago=24)
    answer(places["weir"], 0.81, "severe", hours_ago=2, version=newer)
    Outcome.objects.create(
        prediction=first, flooded=False, observed_at=timezone.now(), reported_by=analyst
    )

    points = site_timeline(site=places["weir"])
    assert [p.probability for p in points] == [0.20, 0.45, 0.81]  # oldest first
    assert [p.new_model for p in points] == [False, False, True]
    assert [p.flooded for p in points] == [False, None, None]

    client.force_login(analyst)
    page = client.get(reverse("site_detail", args=["WEIR"])).content.decode()
    svg = page.split('<svg class="timeline"')[1].split("</svg>")[0]
    assert len(re.findall(r'<circle class="point"', svg)) == 3
    assert len(re.findall(r'<circle class="outcome dry"', svg)) == 1
    assert svg.count('class="model-change"') == 1 and f"v{newer.version}" in svg
    # The latest inputs, and links to filter and export the history by site.
    assert "rainfall_24h_mm" in page and "81.0" in page
    assert f"{reverse('history')}?site=WEIR" in page
    assert f"{reverse('history_export')}?site=WEIR" in page


def test_a_site_page_shows_the_teams_risk_but_not_others_inputs(client, places, answer, analyst):
    colleague = UserFactory(username="colleague")
    answer(places["mill"], 0.66, "high", hours_ago=1, user=colleague)
    client.force_login(analyst)
    page = client.get(reverse("site_detail", args=["MILL"])).content.decode()
    assert "0.660" in page  # the point and the table row: the site's risk is shared
    assert "None of the predictions you can read is for this site." in page
    assert reverse("prediction_detail", args=[Prediction.objects.get().pk]) not in page


def test_an_unknown_site_page_is_a_404(client, places, analyst):
    client.force_login(analyst)
    assert client.get(reverse("site_detail", args=["NOPE"])).status_code == 404


def test_history_and_export_filter_by_site(client, places, answer, analyst):
    answer(places["weir"], 0.20, "low", hours_ago=3)
    answer(places["mill"], 0.70, "high", hours_ago=2)
    client.force_login(analyst)
    page = client.get(reverse("history"), {"site": "MILL"}).content.decode()
    assert '<p class="meta">1 prediction.</p>' in page and ">70%</td>" in page
    export = b"".join(client.get(reverse("history_export"), {"site": "MILL"}).streaming_content)
    lines = export.decode().strip().splitlines()
    assert len(lines) == 2  # the header and MILL's one row


def test_people_without_the_register_cannot_see_site_risk(client, places):
    nobody = UserFactory(username="nobody", role=False)
    client.force_login(nobody)
    assert client.get(reverse("site_map_data")).status_code == 403
    assert client.get(reverse("site_detail", args=["WEIR"])).status_code == 403
    assert "top-sites-title" not in client.get(reverse("home")).content.decode()


def test_auditors_read_site_risk(client, places, answer):
    answer(places["weir"], 0.92, "severe", hours_ago=1)
    auditor = UserFactory(username="audit", role=Role.AUDITOR)
    client.force_login(auditor)
    assert client.get(reverse("site_map_data")).json()["sites"]
    assert client.get(reverse("site_detail", args=["WEIR"])).status_code == 200


def test_codes_that_name_a_register_page_are_refused(production_model, analyst):
    from floodsite.exceptions import ApplicationError
    from predictions.sites import site_create

    with pytest.raises(ApplicationError) as caught:
        site_create(user=analyst, code="new", name="Would hide the register form")
    assert "code" in caught.value.fields
