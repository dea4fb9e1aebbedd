"""An auditor's look at monitoring in a real browser: charts render under the CSP, alerts act."""

from __future__ import annotations

import random
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.roles import Role
from accounts.services import user_set_role
from mlcore.engine import synthetic
from modelops import services
from modelops.models import Alert, AlertKind, AlertStatus
from predictions.models import Prediction, Source
from predictions.services import outcome_create, prediction_create_many
from predictions.tests.factories import BatchJobFactory

# Each starts Chromium against a live server: seconds per test.
pytestmark = pytest.mark.slow

RAINFALL = ("rainfall_24h_mm", "rainfall_72h_mm")
LIMITS = {spec.name: spec.maximum for spec in synthetic.FEATURES}


def site_days(n: int, *, seed: int, rain_factor: float = 1.0) -> list[dict[str, float]]:
    frame = synthetic.generate(n, seed=seed)
    rows = []
    for record in frame[[spec.name for spec in synthetic.FEATURES]].to_dict("records"):
        for name in RAINFALL:
            record[name] = min(record[name] * rain_factor, LIMITS[name])
        rows.append({name: float(value) for name, value in record.items()})
    return rows


def seed_a_day_of_history(user, model_version) -> None:
    """A day of ordinary traffic with hourly checks, then the rain doubles and a check runs.

    Past hours are copies of real answers with earlier timestamps (the service always stamps
    "now"); the last hour is scored by the service itself.
    """
    rng = random.Random(5)
    now = timezone.now()
    ordinary = prediction_create_many(
        user=user, source=Source.API, instances=site_days(200, seed=41)
    )
    history = []
    for hours_ago in range(24, 1, -1):
        for template in rng.choices(ordinary, k=150 + rng.randrange(0, 100)):
            history.append(
                Prediction(
                    created_at=now
                    - timedelta(hours=hours_ago)
                    + timedelta(minutes=rng.uniform(1, 59)),
                    user=user,
                    source=rng.choice([Source.WEB, Source.API]),
                    model_version=model_version,
                    inputs=template.inputs,
                    probability=template.probability,
                    label=template.label,
                    risk_band=template.risk_band,
                    explanation=template.explanation,
                    latency_ms=template.latency_ms * rng.uniform(0.5, 3.0),
                )
            )
    Prediction.objects.bulk_create(history)
    for hours_ago in (20, 9, 3):
        BatchJobFactory(
            owner=user,
            original_name="rivers.csv",
            model_version=model_version,
            total_rows=200,
            processed_rows=200,
            failed_rows=rng.choice([2, 4, 14]),
            progress_at=now - timedelta(hours=hours_ago, minutes=30),
        )
    for hours_ago in range(23, 0, -1):  # each check sees the hour before it
        services.monitoring_report_create(window_minutes=60, now=now - timedelta(hours=hours_ago))
    for prediction in rng.sample(history, 300):
        flooded = rng.random() < prediction.probability
        outcome_create(prediction=prediction, user=user, flooded=flooded)
    for seed in (11, 12):
        prediction_create_many(
            user=user, source=Source.API, instances=site_days(400, seed=seed, rain_factor=2.0)
        )
    services.monitoring_report_create(window_minutes=60)


@pytest.fixture
def auditor(browser_user):
    user_set_role(user=browser_user, role=Role.AUDITOR)
    return browser_user


@pytest.fixture
def csp_violations(page):
    seen: list[str] = []
    page.on(
        "console",
        lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return seen


def test_an_auditor_reads_the_charts_and_acknowledges_the_drift_alert(
    production_model, auditor, signed_in, csp_violations, shot
):
    seed_a_day_of_history(auditor, production_model)
    page = signed_in
    chart_statuses: list[int] = []
    page.on(
        "response",
        lambda response: chart_statuses.append(response.status) if ".svg" in response.url else None,
    )

    page.goto("/")
    banner = page.locator(".alert-banner")
    expect(banner).to_contain_text("open monitoring alert")
    expect(banner).to_contain_text("rainfall_72h_mm")
    banner.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Monitoring", exact=True)).to_be_visible()

    page.wait_for_load_state("load")  # after every image has loaded or failed
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map(img => [img.getAttribute('src'), img.naturalWidth])"
    )
    # Bands, latency, errors, accuracy, one calibration and a sparkline per feature.
    assert len(images) >= 10, images
    assert all(width > 0 for _, width in images), images
    assert chart_statuses and set(chart_statuses) == {200}, chart_statuses
    assert csp_violations == []

    drift_row = page.get_by_role("row", name=re.compile(r"^rainfall_72h_mm"))
    expect(drift_row).to_contain_text("Above the threshold")
    expect(page.get_by_text("Accuracy and calibration on recorded outcomes")).to_be_visible()
    shot("monitoring")

    page.get_by_role("button", name="Acknowledge Input or output drift: rainfall_72h_mm").click()

    expect(
        page.get_by_text("Input or output drift (rainfall_72h_mm) acknowledged.")
    ).to_be_visible()
    alert = Alert.objects.get(
        kind=AlertKind.DRIFT, subject="rainfall_72h_mm", status__in=["open", "acknowledged"]
    )
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by == auditor
    expect(page.locator(f"#alert-{alert.pk}")).to_contain_text(f"by {auditor}")
    assert csp_violations == []
