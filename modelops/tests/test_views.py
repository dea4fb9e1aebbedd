"""The monitoring dashboard: who sees it, what it says when there is nothing, charts, alerts."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.roles import Role
from accounts.tests.factories import UserFactory, make_auditor
from mlcore.engine import synthetic
from mlcore.models import ModelVersion
from modelops import selectors, services
from modelops.models import Alert, AlertKind, AlertStatus
from predictions.models import Source
from predictions.services import outcome_create, prediction_create_many
from predictions.tests.factories import BatchJobFactory

SVG = "{http://www.w3.org/2000/svg}"
RAINFALL = ("rainfall_24h_mm", "rainfall_72h_mm")
LIMITS = {spec.name: (spec.minimum, spec.maximum) for spec in synthetic.FEATURES}


@pytest.fixture(autouse=True)
def _fresh_chart_cache():
    cache.clear()
    yield
    cache.clear()


def site_days(n: int, *, seed: int, rain_factor: float = 1.0) -> list[dict[str, float]]:
    """Inputs from the generator the model was trained on, with rainfall scaled if asked."""
    frame = synthetic.generate(n, seed=seed)
    rows = []
    for record in frame[[spec.name for spec in synthetic.FEATURES]].to_dict("records"):
        for name in RAINFALL:
            record[name] = min(record[name] * rain_factor, LIMITS[name][1])
        rows.append({name: float(value) for name, value in record.items()})
    return rows


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def auditor(db):
    return make_auditor(UserFactory(username="audrey"))


@pytest.fixture
def staff(db):
    """An admin (the role makes them staff)."""
    return UserFactory(username="stef", role=Role.ADMIN)


def svg_texts(response) -> str:
    """The SVG parses as XML and its <text> elements, joined; what a reader sees on the chart."""
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/svg+xml"
    body = b"".join(response) if response.streaming else response.content
    root = ET.fromstring(body)  # noqa: S314 - our own server's output, not untrusted input
    assert root.tag == f"{SVG}svg"
    return " ".join("".join(node.itertext()) for node in root.iter(f"{SVG}text"))


def chart(client: Client, name: str, *args, window: str = "24h"):
    return client.get(reverse(name, args=args), {"window": window})


def test_analysts_are_refused_auditors_and_staff_see_the_dashboard(analyst, auditor, staff):
    url = reverse("monitoring")

    refused = signed_in(analyst).get(url)
    assert refused.status_code == 403
    assert "modelops.view_monitoringreport" in refused.content.decode()
    assert signed_in(analyst).get(reverse("chart_bands")).status_code == 403
    assert Client().get(url).status_code == 302  # to the sign-in page

    page = signed_in(auditor).get(url)
    assert page.status_code == 200
    assert "Monitoring" in page.content.decode()
    assert 'aria-current="page">24 hours' in page.content.decode()
    assert signed_in(staff).get(url).status_code == 200
    # Only staff may run a check from the page.
    assert "Run a check now" not in page.content.decode()
    assert "Run a check now" in signed_in(staff).get(url).content.decode()


def test_the_monitoring_link_is_in_the_nav_for_auditors_only(analyst, auditor):
    assert reverse("monitoring") in signed_in(auditor).get("/").content.decode()
    assert reverse("monitoring") not in signed_in(analyst).get("/").content.decode()


@pytest.mark.parametrize("window", ["1y", "24", "", "7D"])
def test_a_bad_window_is_a_400_naming_the_parameter(auditor, window):
    client = signed_in(auditor)
    response = client.get(reverse("monitoring"), {"window": window or " "})
    assert response.status_code == 400
    text = response.content.decode()
    assert "The window parameter must be one of 24h, 7d, 30d" in text
    chart_response = chart(client, "chart_latency", window=window or " ")
    assert chart_response.status_code == 400


def test_an_empty_dashboard_says_why_each_part_is_empty(production_model, auditor):
    text = signed_in(auditor).get(reverse("monitoring"), {"window": "7d"}).content.decode()

    assert "No open alerts." in text
    assert "No predictions were made in the last 7 days." in text
    assert "No monitoring check ran in the last 7 days" in text
    assert "so drift has not been measured" in text
    assert "so there is no latency history yet" in text
    assert "No batch rows were processed in the last 7 days" in text
    assert "No outcomes recorded yet for predictions made in the last 7 days" in text
    assert "<img" not in text  # no chart without data to draw


def test_charts_with_nothing_to_draw_are_still_images_saying_so(production_model, auditor):
    client = signed_in(auditor)

    assert "No predictions were made in the last 30 days." in svg_texts(
        chart(client, "chart_bands", window="30d")
    )
    assert "no latency" in svg_texts(chart(client, "chart_latency"))
    assert "no error rate" in svg_texts(chart(client, "chart_errors"))
    assert "No outcomes recorded yet" in svg_texts(chart(client, "chart_accuracy"))
    assert "No outcomes yet." in svg_texts(chart(client, "chart_calibration", production_model.pk))
    assert chart(client, "chart_calibration", 999_999).status_code == 404
    assert chart(client, "chart_psi", "rainfall_24h_mm").status_code == 404


def test_a_version_without_reference_statistics_says_drift_cannot_be_measured(
    production_model, analyst, auditor
):
    prediction_create_many(user=analyst, source=Source.API, instances=site_days(20, seed=31))
    manifest = dict(production_model.manifest, reference={})
    ModelVersion.objects.filter(pk=production_model.pk).update(manifest=manifest)
    services.monitoring_report_create(window_minutes=60)

    text = signed_in(auditor).get(reverse("monitoring")).content.decode()

    name = str(production_model)
    assert f"{name[:1].upper()}{name[1:]} has no reference statistics in its manifest" in text
    assert "drift cannot be measured; retrain it to record them." in text


def test_one_class_of_outcomes_says_roc_auc_needs_both(production_model, analyst, auditor):
    rows = prediction_create_many(user=analyst, source=Source.API, instances=site_days(12, seed=32))
    for prediction in rows:
        outcome_create(prediction=prediction, user=analyst, flooded=False)

    text = signed_in(auditor).get(reverse("monitoring")).content.decode()

    assert "Only one class observed (non-floods only); ROC-AUC needs floods and non-floods" in text
    assert "12 (0 flooded, 12 not) of 12 predictions" in text
    assert "not measurable" in text
    one_class = svg_texts(chart(signed_in(auditor), "chart_accuracy"))
    assert "n/a" in one_class and "one class only" in one_class


def test_too_few_predictions_for_drift_are_shown_but_not_judged(production_model, analyst, auditor):
    prediction_create_many(user=analyst, source=Source.API, instances=site_days(30, seed=33))
    services.monitoring_report_create(window_minutes=60)

    text = signed_in(auditor).get(reverse("monitoring")).content.decode()

    assert "The latest check compared 30 predictions" in text
    assert "Not judged: 30 predictions, fewer than MONITOR_DRIFT_MIN_ROWS=100." in text
    assert "rainfall_72h_mm" in text


def test_every_chart_is_valid_svg_with_its_title_labels_and_values(
    production_model, analyst, auditor, settings
):
    settings.MONITOR_P95_LATENCY_MS = 10_000.0
    rows = prediction_create_many(user=analyst, source=Source.WEB, instances=site_days(60, seed=34))
    median = sorted(p.probability for p in rows)[30]
    for prediction in rows:
        outcome_create(
            prediction=prediction, user=analyst, flooded=prediction.probability >= median
        )
    BatchJobFactory(
        owner=analyst,
        model_version=production_model,
        total_rows=50,
        processed_rows=50,
        failed_rows=5,
        progress_at=timezone.now(),
    )
    services.monitoring_report_create(window_minutes=60)
    client = signed_in(auditor)

    bands = svg_texts(chart(client, "chart_bands"))
    assert "Predictions per hour by risk band, last 24 hours" in bands
    assert "Predictions" in bands and "Risk band" in bands and "60" in bands  # the bar total
    assert "Predictions per day by risk band, last 7 days" in svg_texts(
        chart(client, "chart_bands", window="7d")
    )
    latency = svg_texts(chart(client, "chart_latency"))
    assert "Latency of web and API predictions" in latency
    assert "Milliseconds" in latency and "p95" in latency and " ms" in latency
    assert "p95 alert above 10,000 ms (off the chart)" in latency
    errors = svg_texts(chart(client, "chart_errors"))
    assert "Batch row error rate" in errors and "Failed rows (%)" in errors
    assert "10.0% (5 of 50 rows)" in errors and "alert above 5.0%" in errors
    accuracy = svg_texts(chart(client, "chart_accuracy"))
    assert "Accuracy on recorded outcomes per model version" in accuracy
    assert str(production_model) in accuracy and "60 outcomes" in accuracy
    assert "ROC-AUC at training" in accuracy and "1.000" in accuracy
    calibration = svg_texts(chart(client, "chart_calibration", production_model.pk))
    assert f"Calibration of {production_model}" in calibration
    assert (
        "Observed flood rate" in calibration and "Mean predicted flood probability" in calibration
    )
    assert "n=" in calibration and "60 outcomes, Brier" in calibration
    spark = svg_texts(chart(client, "chart_psi", "rainfall_24h_mm"))
    assert "PSI of rainfall_24h_mm" in spark
    probability = chart(client, "chart_psi", selectors.PROBABILITY_SUBJECT)
    assert "PSI of predicted probability" in svg_texts(probability)

    page = client.get(reverse("monitoring")).content.decode()
    for name in ("chart_bands", "chart_latency", "chart_errors", "chart_accuracy"):
        assert f'src="{reverse(name)}?window=24h"' in page
    assert reverse("chart_calibration", args=[production_model.pk]) in page
    assert reverse("chart_psi", args=["rainfall_24h_mm"]) in page
    assert "5 of 50 batch rows failed in the last 24 hours (10.0%, 1 job)" in page
    assert "Error-rate alerts" in page and "5 of 50 batch rows failed (10.0% &gt; 5.0%)" in page


def test_chart_responses_may_style_themselves_but_run_and_load_nothing(production_model, auditor):
    response = chart(signed_in(auditor), "chart_bands")
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'unsafe-inline'" in policy
    assert "script-src" not in policy
    assert response["Cache-Control"].startswith("private")
    page = signed_in(auditor).get(reverse("monitoring"))
    assert "unsafe-inline" not in page["Content-Security-Policy"]


def test_a_new_check_redraws_the_charts_at_once(production_model, analyst, auditor):
    client = signed_in(auditor)
    prediction_create_many(user=analyst, source=Source.API, instances=site_days(5, seed=35))
    assert "no latency" in svg_texts(chart(client, "chart_latency"))

    services.monitoring_report_create(window_minutes=60)

    assert "p95" in svg_texts(chart(client, "chart_latency"))


def open_no_traffic_alert() -> Alert:
    services.monitoring_report_create(window_minutes=60)
    return Alert.objects.get(kind=AlertKind.NO_TRAFFIC, status=AlertStatus.OPEN)


def test_acknowledge_and_resolve_by_post_record_who_and_when(production_model, auditor, analyst):
    alert = open_no_traffic_alert()
    client = signed_in(auditor)
    page = client.get(reverse("monitoring")).content.decode()
    assert "No traffic" in page and "Acknowledge" in page

    response = client.post(reverse("alert_acknowledge", args=[alert.pk]), {"window": "7d"})

    assert response.status_code == 302 and response["Location"].endswith("?window=7d")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED
    assert alert.acknowledged_by == auditor and alert.acknowledged_at is not None
    page = client.get(response["Location"]).content.decode()
    assert "No traffic acknowledged." in page
    assert f"by {auditor.username}" in page

    client.post(reverse("alert_resolve", args=[alert.pk]))

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by == auditor
    assert alert.resolved_at is not None
    assert "No open alerts." in client.get(reverse("monitoring")).content.decode()
    again = client.post(reverse("alert_acknowledge", args=[alert.pk]))
    assert again.status_code == 409
    assert "This alert is already resolved." in again.content.decode()


def test_alert_actions_refuse_analysts_gets_and_unknown_alerts(production_model, analyst, auditor):
    alert = open_no_traffic_alert()

    assert signed_in(analyst).post(reverse("alert_resolve", args=[alert.pk])).status_code == 403
    assert signed_in(auditor).get(reverse("alert_resolve", args=[alert.pk])).status_code == 405
    assert signed_in(auditor).post(reverse("alert_resolve", args=[999_999])).status_code == 404
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN
    no_csrf = Client(enforce_csrf_checks=True)
    no_csrf.force_login(auditor)
    assert no_csrf.post(reverse("alert_acknowledge", args=[alert.pk])).status_code == 403
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN


def test_the_banner_shows_open_alerts_to_auditors_and_staff_only(
    production_model, analyst, auditor, staff
):
    alert = open_no_traffic_alert()

    for user in (auditor, staff):
        text = signed_in(user).get("/").content.decode()
        assert "1 open monitoring alert</a>" in text
        assert "No traffic" in text
    assert "open monitoring alert" not in signed_in(analyst).get("/").content.decode()

    services.alert_acknowledge(alert=alert, user=auditor)
    assert "open monitoring alert" not in signed_in(auditor).get("/").content.decode()


def test_the_banner_costs_one_query(production_model, django_assert_num_queries):
    open_no_traffic_alert()
    Alert.objects.create(kind=AlertKind.LATENCY, subject="web and API p95", message="slow")
    with django_assert_num_queries(1):
        banner = selectors.alert_banner_get(limit=1)
    assert banner["total"] == 2 and len(banner["alerts"]) == 1


def test_only_staff_run_a_check_from_the_page(production_model, auditor, staff):
    assert signed_in(auditor).post(reverse("monitoring_check")).status_code == 403

    client = signed_in(staff)
    response = client.post(reverse("monitoring_check"), {"window": "30d"})

    assert response.status_code == 302 and response["Location"].endswith("?window=30d")
    assert selectors.monitoring_report_latest() is not None
    text = client.get(response["Location"]).content.decode()
    assert "Check finished: 1 new, 0 repeated and 0 resolved alerts." in text


@pytest.mark.slow
def test_doubled_rainfall_shows_a_drift_alert_on_the_dashboard_and_banner(
    production_model, analyst, auditor, staff
):
    prediction_create_many(
        user=analyst, source=Source.API, instances=site_days(400, seed=11, rain_factor=2.0)
    )

    signed_in(staff).post(reverse("monitoring_check"))

    alert = Alert.objects.get(kind=AlertKind.DRIFT, subject="rainfall_72h_mm")
    client = signed_in(auditor)
    home = client.get("/").content.decode()
    assert "Input or output drift (rainfall_72h_mm)" in home
    page = client.get(reverse("monitoring")).content.decode()
    assert f'id="alert-{alert.pk}"' in page
    assert "rainfall_72h_mm drifted in" in page
    assert "The latest check compared 400 predictions" in page
    row = page[page.index('<th scope="row">rainfall_72h_mm</th>') :]
    row = row[: row.index("</tr>")]
    assert "Above the threshold 0.2" in row and "alert open" in row
    spark = svg_texts(chart(client, "chart_psi", "rainfall_72h_mm"))
    assert "PSI of rainfall_72h_mm" in spark

    # Shifted inputs keep coming; the next check repeats the alert rather than adding one.
    later = timezone.now() + timedelta(minutes=5)
    services.monitoring_report_create(window_minutes=60, now=later)
    alert.refresh_from_db()
    assert alert.occurrences == 2
    assert Alert.objects.filter(kind=AlertKind.DRIFT, subject="rainfall_72h_mm").count() == 1


def test_a_version_page_link_focuses_accuracy_and_drift_on_that_version(
    register_model, analyst, auditor
):
    older = register_model(promote=True)
    rows = prediction_create_many(user=analyst, source=Source.API, instances=site_days(40, seed=36))
    for prediction in rows:
        outcome_create(prediction=prediction, user=analyst, flooded=prediction.probability > 0.3)
    newer = register_model(promote=True)
    services.monitoring_report_create(window_minutes=60)
    client = signed_in(auditor)

    text = client.get(
        reverse("monitoring"), {"model": older.name, "version": older.version}
    ).content.decode()

    assert f"Accuracy and drift of <strong>{older}</strong>" in text
    assert f"Measured now: 40 predictions of {older} made in the last 24 hours" in text
    assert "40 (" in text and f'id="version-{older.pk}"' in text
    assert f"?window=7d&amp;model={older.name}&amp;version={older.version}" in text
    newest = client.get(
        reverse("monitoring"), {"model": newer.name, "version": newer.version}
    ).content.decode()
    # The latest check measured the new production version, which has no predictions yet.
    assert "No predictions of this version in the window." in newest
    assert "No outcomes yet." in newest


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"model": "flood-risk", "version": "two"}, 400, "The version parameter must be a whole"),
        ({"model": "flood-risk"}, 400, "Give both the model and the version parameters"),
        ({"version": "1"}, 400, "Give both the model and the version parameters"),
        ({"model": "flood-risk", "version": "99"}, 404, "does not exist"),
    ],
)
def test_bad_model_or_version_parameters_are_4xx_naming_them(
    production_model, auditor, query, status, message
):
    response = signed_in(auditor).get(reverse("monitoring"), query)
    assert response.status_code == status
    assert message in response.content.decode()
