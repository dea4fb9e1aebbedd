"""Issue #7 end to end: shifted inputs through the API raise a drift alert at the next scheduled
check, seen on the dashboard, its banner, /metrics and by e-mail; outcomes then show accuracy
and calibration for the production version."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from accounts.tests.factories import UserFactory, make_auditor
from mlcore.engine import synthetic
from modelops import selectors
from modelops.models import Alert, AlertKind, AlertStatus, MonitoringReport
from modelops.tasks import monitoring_check_task
from predictions.models import Prediction

PREDICT = "/api/v1/predictions/"
RAINFALL = ("rainfall_24h_mm", "rainfall_72h_mm")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counts and cached charts from earlier tests must not leak in."""
    cache.clear()
    yield
    cache.clear()


def wet_sites(n: int, *, seed: int) -> tuple[list[dict[str, float]], list[bool]]:
    """Generator site-days with both rainfall totals doubled, and whether each flooded."""
    frame = synthetic.generate(n, seed=seed)
    inputs = []
    for record in frame[synthetic.FEATURE_NAMES].to_dict("records"):
        row = {name: float(value) for name, value in record.items()}
        for name in RAINFALL:
            row[name] *= 2
        inputs.append(row)
    return inputs, [bool(value) for value in frame[synthetic.TARGET]]


def scrape(client: Client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")  # the test client's 127.0.0.1 is an allowed address
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def svg_text(response) -> str:
    """What a reader sees on a chart: its <text> elements, from SVG that parses."""
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    root = ET.fromstring(response.content)  # noqa: S314 - our own server's output
    return " ".join(
        "".join(node.itertext()) for node in root.iter("{http://www.w3.org/2000/svg}text")
    )


@pytest.mark.slow
def test_doubled_rainfall_alerts_everywhere_then_outcomes_show_accuracy(
    api, production_model, settings, mailoutbox, client
):
    settings.MONITOR_ALERT_EMAILS = ["oncall@example.org"]
    threshold = settings.MONITOR_PSI_THRESHOLD
    auditor = Client()
    auditor.force_login(make_auditor(UserFactory(username="audrey")))
    version = str(production_model)  # "flood-risk v1"

    # A wet spell: the field sends sites whose 24- and 72-hour rain is twice the usual.
    inputs, flooded = wet_sites(400, seed=11)
    response = api.post(PREDICT, {"instances": inputs}, format="json")
    assert response.status_code == 201, response.content
    answers = response.json()["predictions"]
    assert "No open alerts." in auditor.get(reverse("monitoring")).content.decode()

    # The scheduled check runs once (what beat runs every MONITOR_INTERVAL_MINUTES).
    report = MonitoringReport.objects.get(pk=monitoring_check_task.apply().get())

    drift = {a.subject: a for a in Alert.objects.filter(kind=AlertKind.DRIFT)}
    # Doubling the heavy-tailed 24-hour rain gives a PSI near 0.16, under the default 0.2;
    # the 72-hour total crosses it.
    assert "rainfall_72h_mm" in drift, report.metrics["drift"]
    assert set(drift) <= {*RAINFALL, selectors.PROBABILITY_SUBJECT}, drift
    alert = drift["rainfall_72h_mm"]
    assert alert.status == AlertStatus.OPEN and alert.report == report
    psi = report.metrics["drift"]["features"]["rainfall_72h_mm"]["psi"]
    assert psi > threshold
    assert alert.message.startswith(f"rainfall_72h_mm drifted in {version}: PSI {psi:.2f}")

    # By e-mail: one message naming the feature.
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["oncall@example.org"]
    assert mail.subject.startswith("[floodsite] ") and "new monitoring alert" in mail.subject
    assert "Input or output drift - rainfall_72h_mm" in mail.body
    assert alert.message in mail.body

    # On the dashboard and in the banner every page shows auditors.
    page = auditor.get(reverse("monitoring")).content.decode()
    assert f'id="alert-{alert.pk}"' in page and escape(alert.message) in page
    assert "The latest check compared 400 predictions" in page
    row = page[page.index('<th scope="row">rainfall_72h_mm</th>') :]
    row = row[: row.index("</tr>")]
    assert f"{psi:.3f}" in row and "alert open" in row
    home = auditor.get("/").content.decode()
    assert f"{len(drift)} open monitoring alert" in home
    assert "Input or output drift (rainfall_72h_mm)" in home

    # In the Prometheus scrape.
    samples = scrape(client)
    labels = frozenset({"feature": "rainfall_72h_mm", "model_version": version}.items())
    assert samples[("floodsite_drift_psi", labels)] == pytest.approx(psi)
    assert samples[("floodsite_drift_psi", labels)] > threshold
    open_drift = sum(
        value
        for (name, have), value in samples.items()
        if name == "floodsite_alerts_open" and {("kind", "drift"), ("status", "open")} <= have
    )
    assert open_drift == len(drift)

    # Later, what happened at 150 of the sites is recorded through the API.
    recorded = answers[:150]
    for answer, happened in zip(recorded, flooded, strict=False):
        reply = api.post(f"{PREDICT}{answer['id']}/outcome/", {"flooded": happened}, format="json")
        assert reply.status_code == 201, reply.content
    y = np.array(flooded[:150], dtype=int)
    assert 0 < y.sum() < 150  # both classes
    p = np.array(
        [Prediction.objects.get(pk=answer["id"]).probability for answer in recorded], dtype=float
    )
    roc_auc = roc_auc_score(y, p)
    brier = float(np.mean((p - y) ** 2))

    page = auditor.get(reverse("monitoring")).content.decode()
    section = page[page.index('id="accuracy-title"') :]
    card = section[section.index(f'id="version-{production_model.pk}"') :]
    card = re.sub(r"\s+", " ", card[: card.index("</article>")])
    assert f">{version}</h3>" in card
    assert f"<dd>150 ({y.sum()} flooded, {150 - y.sum()} not) of 400 predictions</dd>" in card
    training = production_model.metrics["roc_auc"]
    assert f"<dt>ROC-AUC</dt><dd>{roc_auc:.3f} (training {training:.3f})</dd>" in card
    assert f"<dt>Brier score</dt><dd>{brier:.4f}</dd>" in card
    calibration = reverse("chart_calibration", args=[production_model.pk])
    assert f'src="{calibration}?window=24h"' in card
    chart = svg_text(auditor.get(calibration, {"window": "24h"}))
    assert f"Calibration of {version}, last 24 hours" in chart
    assert f"150 outcomes, Brier {brier:.3f}" in chart
    assert sum(int(n) for n in re.findall(r"n=(\d+)", chart)) == 150
