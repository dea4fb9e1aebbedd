"""The shadow comparison: its numbers on a hand-built log, and its page (/models/.../shadow/)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory, make_auditor
from mlcore.services import model_version_shadow_start
from modelops.shadow import shadow_comparison_get
from predictions.tests.factories import OutcomeFactory, PredictionFactory


@pytest.fixture
def compared(production_model, register_model, admin_user):
    """A small hand-built log: four compared rows, one shadow error, two rows left out."""
    shadow = register_model()
    model_version_shadow_start(model_version=shadow, user=admin_user, reason="compare")
    user = UserFactory(username="field")
    now = timezone.now()

    def row(p, band, sp, sband, *, flooded=None, error="", shadow_mv=shadow, at=now):
        prediction = PredictionFactory(
            user=user,
            model_version=production_model,
            probability=p,
            risk_band=band,
            created_at=at,
            shadow_model_version=shadow_mv,
            shadow_probability=sp,
            shadow_risk_band=sband,
            shadow_error=error,
        )
        if flooded is not None:
            OutcomeFactory(prediction=prediction, flooded=flooded, observed_at=now)

    row(0.10, "low", 0.15, "low", flooded=False)  # both right
    row(0.30, "moderate", 0.60, "high", flooded=True)  # only the shadow right
    row(0.55, "high", 0.45, "moderate", flooded=False)  # only the shadow right
    row(0.90, "severe", 0.85, "severe")  # no outcome
    row(0.40, "moderate", None, "", error="SchemaError: boom")
    row(0.20, "moderate", 0.90, "severe", at=now - timedelta(days=40))  # outside the window
    row(0.20, "moderate", None, "", shadow_mv=None)  # before the shadow started
    return shadow


def test_the_comparison_numbers_on_a_hand_built_case(compared):
    now = timezone.now()
    c = shadow_comparison_get(shadow=compared, since=now - timedelta(days=30), until=now)
    assert (c.rows, c.errors, c.outcomes) == (4, 1, 3)
    assert c.band_agreement == pytest.approx(50.0)
    assert c.label_agreement == pytest.approx(50.0)
    assert c.diff_mean == pytest.approx(0.125)
    assert c.diff_median == pytest.approx(0.075)
    assert c.diff_p95 == pytest.approx(0.27)
    assert c.diff_max == pytest.approx(0.30)
    assert c.bands == ["low", "moderate", "high", "severe"]
    assert [r["counts"] for r in c.confusion] == [
        [1, 0, 0, 0],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 1],
    ]
    assert (c.production_right, c.shadow_right, c.both_right, c.neither_right) == (1, 3, 1, 0)
    assert (c.only_production_right, c.only_shadow_right) == (0, 2)


def test_the_comparison_page_for_auditors_and_staff_only(client, analyst, compared, admin_user):
    url = f"/models/{compared.name}/{compared.version}/shadow/"
    client.force_login(analyst)
    assert client.get(url).status_code == 403

    client.force_login(make_auditor(UserFactory(username="audrey")))
    page = client.get(url)
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.content.decode())
    assert "<dt>Rows compared</dt><dd>4</dd>" in text
    assert "<dt>Same risk band</dt><dd>50.0%</dd>" in text
    assert "<dt>Mean</dt><dd>0.1250</dd>" in text
    assert "<dt>95th percentile</dt><dd>0.2700</dd>" in text
    assert "<dt>Shadow errors</dt><dd>1</dd>" in text
    assert "<dt>Only the shadow</dt><dd>2</dd>" in text
    assert "3 (100.0%)" in text and "1 (33.3%)" in text  # right: shadow, answer given

    client.force_login(admin_user)
    detail = client.get(f"/models/{compared.name}/{compared.version}/").content.decode()
    assert f'href="{url}"' in detail
    assert f'href="/monitoring/?model={compared.name}&amp;version={compared.version}"' in detail


def test_the_comparison_page_says_when_there_is_nothing_to_compare(
    client, admin_user, production_model, register_model
):
    other = register_model()
    client.force_login(admin_user)
    page = client.get(f"/models/{other.name}/{other.version}/shadow/")
    assert page.status_code == 200
    assert "Nothing to compare yet" in page.content.decode()


def test_bad_comparison_filters_are_a_400_naming_the_field(client, admin_user, compared):
    client.force_login(admin_user)
    url = f"/models/{compared.name}/{compared.version}/shadow/"
    page = client.get(url, {"days": "0"})
    assert page.status_code == 400
    assert 'id="id_days"' in page.content.decode() and "greater than or equal to 1" in (
        page.content.decode()
    )
    page = client.get(url, {"days": "ten"})
    assert page.status_code == 400 and "Enter a whole number" in page.content.decode()
    page = client.get(url, {"against": "77"})
    assert page.status_code == 400
    assert f"{compared.name} has no version 77." in page.content.decode()
    page = client.get(url, {"days": "7", "against": "1"})
    assert page.status_code == 200 and "rows answered by" in page.content.decode()
