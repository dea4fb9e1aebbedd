"""Monitoring checks: drift, accuracy and health alerts over the real audit log and database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory
from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic
from mlcore.models import ModelVersion
from modelops import selectors, services
from modelops.models import Alert, AlertKind, AlertSeverity, AlertStatus, MonitoringReport
from modelops.tasks import monitoring_check_task
from predictions.models import Outcome, Prediction, Source
from predictions.services import outcome_create, prediction_create_many
from predictions.tests.factories import BatchJobFactory

RAINFALL = ("rainfall_24h_mm", "rainfall_72h_mm")
LIMITS = {spec.name: (spec.minimum, spec.maximum) for spec in synthetic.FEATURES}


def site_days(n: int, *, seed: int, rain_factor: float = 1.0) -> list[dict[str, float]]:
    """Realistic inputs from the generator the model was trained on, rain scaled if asked."""
    frame = synthetic.generate(n, seed=seed)
    rows = []
    for record in frame[[spec.name for spec in synthetic.FEATURES]].to_dict("records"):
        for name in RAINFALL:
            record[name] = min(record[name] * rain_factor, LIMITS[name][1])
        rows.append({name: float(value) for name, value in record.items()})
    return rows


def predict(user, rows, *, source=Source.API) -> list[Prediction]:
    return prediction_create_many(user=user, source=source, instances=rows)


def active(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind, status__in=["open", "acknowledged"]))


@pytest.fixture
def alerts_mailed_to(settings):
    settings.MONITOR_ALERT_EMAILS = ["ops@example.org"]
    return settings.MONITOR_ALERT_EMAILS


@pytest.mark.slow
def test_doubled_rainfall_raises_one_drift_alert_per_rain_feature_mailed_once(
    production_model, analyst, alerts_mailed_to, mailoutbox
):
    predict(analyst, site_days(400, seed=11, rain_factor=2.0))

    report = services.monitoring_report_create(window_minutes=60)

    drifted = {alert.subject: alert for alert in active(AlertKind.DRIFT)}
    # 24-hour rain is heavy-tailed: doubling it moves every value about one reference decile,
    # a PSI near 0.16 ("moderate"), under the default 0.2; the 72-hour total crosses it.
    assert "rainfall_72h_mm" in drifted, drifted
    assert not set(drifted) - {*RAINFALL, selectors.PROBABILITY_SUBJECT}, drifted
    features = report.metrics["drift"]["features"]
    assert features["rainfall_24h_mm"]["level"] == "moderate"
    rain = drifted["rainfall_72h_mm"]
    assert rain.occurrences == 1 and rain.report == report
    assert "PSI" in rain.message and str(production_model) in rain.message
    assert features["rainfall_72h_mm"]["psi"] > 0.2
    assert report.metrics["drift"]["n"] == 400
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["ops@example.org"]
    assert "rainfall_72h_mm" in mailoutbox[0].body

    again = services.monitoring_report_create(window_minutes=60)

    drifted_again = {alert.subject: alert for alert in active(AlertKind.DRIFT)}
    assert set(drifted_again) == set(drifted)
    repeated = drifted_again["rainfall_72h_mm"]
    assert repeated.pk == rain.pk
    assert repeated.occurrences == 2 and repeated.report == again
    assert repeated.last_seen >= rain.last_seen and repeated.first_seen == rain.first_seen
    assert Alert.objects.filter(kind=AlertKind.DRIFT, subject="rainfall_72h_mm").count() == 1
    assert len(mailoutbox) == 1, "a repeat of an open alert is not mailed again"
    assert set(again.metrics["alerts"]["repeated"]) >= {rain.pk}


def test_at_the_moderate_psi_threshold_both_rain_features_alert(
    production_model, analyst, settings
):
    settings.MONITOR_PSI_THRESHOLD = 0.1
    predict(analyst, site_days(400, seed=11, rain_factor=2.0))

    services.monitoring_report_create(window_minutes=60)

    drifted = {alert.subject for alert in active(AlertKind.DRIFT)}
    assert set(RAINFALL) <= drifted
    assert "elevation_m" not in drifted and "slope_deg" not in drifted


@pytest.mark.slow
def test_inputs_like_the_training_data_raise_no_drift_alert(production_model, analyst):
    predict(analyst, site_days(400, seed=12))

    report = services.monitoring_report_create(window_minutes=60)

    assert active(AlertKind.DRIFT) == []
    block = report.metrics["drift"]
    assert block["status"] == "ok" and block["max_rows"] == selectors.MAX_ROWS
    assert all(entry["psi"] < 0.2 for entry in block["features"].values())
    assert block["probability"]["psi"] is not None
    assert report.metrics["traffic"]["total"] == 400
    assert report.metrics["traffic"]["by_source"] == {"api": 400}
    assert sum(report.metrics["traffic"]["by_band"].values()) == 400
    assert report.metrics["latency_ms"]["interactive"]["p95"] is not None


def test_drift_alert_is_resolved_by_the_check_that_finds_it_gone(
    production_model, analyst, settings
):
    predict(analyst, site_days(200, seed=13, rain_factor=2.0))
    services.monitoring_report_create(window_minutes=60)
    raised = active(AlertKind.DRIFT)
    assert raised

    settings.MONITOR_PSI_THRESHOLD = 100.0
    report = services.monitoring_report_create(window_minutes=60)

    assert active(AlertKind.DRIFT) == []
    for alert in Alert.objects.filter(pk__in=[a.pk for a in raised]):
        assert alert.status == AlertStatus.RESOLVED and alert.resolved_by is None
    assert set(report.metrics["alerts"]["resolved"]) == {a.pk for a in raised}


def test_too_few_rows_are_reported_but_not_judged_and_leave_drift_alerts_alone(
    production_model, analyst
):
    predict(analyst, site_days(200, seed=14, rain_factor=2.0))
    services.monitoring_report_create(window_minutes=60)
    raised = {alert.pk for alert in active(AlertKind.DRIFT)}

    later = timezone.now() + timedelta(minutes=61)
    report = services.monitoring_report_create(window_minutes=60, now=later)

    assert report.metrics["drift"]["status"] == "no_data"
    assert {alert.pk for alert in active(AlertKind.DRIFT)} == raised


def test_a_version_without_reference_statistics_reports_unknown_drift(production_model, analyst):
    predict(analyst, site_days(150, seed=15))
    manifest = dict(production_model.manifest, reference={})
    ModelVersion.objects.filter(pk=production_model.pk).update(manifest=manifest)

    report = services.monitoring_report_create(window_minutes=60)

    drift = report.metrics["drift"]
    assert drift["status"] == "unknown"
    assert "no reference statistics" in drift["reason"]
    assert active(AlertKind.DRIFT) == []


def test_probability_drift_says_so_when_the_reference_lacks_it(production_model, analyst):
    predict(analyst, site_days(50, seed=16))
    reference = dict(production_model.manifest["reference"])
    reference.pop("__probability__")
    production_model.manifest = dict(production_model.manifest, reference=reference)

    drift = selectors.model_drift_get(
        model_version=production_model,
        since=timezone.now() - timedelta(hours=1),
        until=timezone.now() + timedelta(seconds=1),
    )

    assert drift["status"] == "ok" and drift["n"] == 50
    assert drift["probability"]["level"] == "unknown"
    assert "no reference for predicted probabilities" in drift["probability"]["reason"]
    assert drift["features"]["rainfall_24h_mm"]["psi"] is not None


def test_drift_reads_only_the_newest_rows_up_to_the_cap(production_model, analyst):
    predict(analyst, site_days(30, seed=17))
    drift = selectors.model_drift_get(
        model_version=production_model,
        since=timezone.now() - timedelta(hours=1),
        until=timezone.now() + timedelta(seconds=1),
        max_rows=10,
    )
    assert drift["n"] == 10 and drift["capped"] is True and drift["max_rows"] == 10


def record_outcomes(user, predictions, *, flooded) -> None:
    for prediction in predictions:
        outcome_create(prediction=prediction, user=user, flooded=flooded(prediction))


def test_outcomes_give_accuracy_and_calibration_per_model_version(register_model, analyst):
    first = register_model(promote=True)
    early = predict(analyst, site_days(120, seed=18))
    record_outcomes(analyst, early, flooded=lambda p: p.probability >= 0.5)
    second = register_model(promote=True)
    late = predict(analyst, site_days(40, seed=19))
    record_outcomes(analyst, late[:30], flooded=lambda p: p.probability < 0.5)

    by_version = {row["model_version"]: row for row in selectors.model_accuracy_list()}

    assert set(by_version) == {str(first), str(second)}
    one = by_version[str(first)]
    assert one["status"] == "ok" and one["n"] == 120 and one["predictions"] == 120
    assert one["accuracy"] == 1.0
    assert one["training_roc_auc"] == first.metrics["roc_auc"]
    assert sum(row["count"] for row in one["calibration"]) == 120
    assert {row["band"] for row in one["bands"]} == {"moderate", "high", "severe"}
    two = by_version[str(second)]
    assert two["n"] == 30 and two["predictions"] == 40 and two["accuracy"] == 0.0
    if two["floods"] and two["non_floods"]:
        assert two["roc_auc"] < 0.5


def test_the_accuracy_window_selects_predictions_by_when_they_were_made(production_model, analyst):
    rows = predict(analyst, site_days(20, seed=20))
    record_outcomes(analyst, rows, flooded=lambda p: p.probability >= 0.5)
    now = timezone.now()

    inside = selectors.model_accuracy_get(
        model_version=production_model, since=now - timedelta(hours=1), until=now
    )
    before = selectors.model_accuracy_get(
        model_version=production_model, since=now - timedelta(days=2), until=now - timedelta(days=1)
    )
    empty = selectors.model_accuracy_get(model_version=production_model, since=now, until=now)

    assert inside["n"] == 20
    assert before["status"] == "no_outcomes" and before["reason"] == "no outcomes yet"
    assert before["predictions"] == 0
    assert empty["status"] == "empty_window" and "window is empty" in empty["reason"]
    drift_empty = selectors.model_drift_get(model_version=production_model, since=now, until=now)
    assert drift_empty["status"] == "empty_window"


def test_no_outcomes_and_one_class_are_clear_results(production_model, analyst):
    rows = predict(analyst, site_days(10, seed=21))
    nothing = selectors.model_accuracy_get(model_version=production_model)
    assert nothing["status"] == "no_outcomes" and nothing["reason"] == "no outcomes yet"

    record_outcomes(analyst, rows, flooded=lambda p: False)
    one_class = selectors.model_accuracy_get(model_version=production_model)
    assert one_class["n"] == 10 and one_class["roc_auc"] is None
    assert "only one class" in one_class["roc_auc_reason"]

    report = services.monitoring_report_create(window_minutes=60)
    assert "not judged" in report.metrics["accuracy"]["alerting"]
    assert active(AlertKind.ACCURACY_DROP) == []


def test_roc_auc_far_below_training_raises_an_accuracy_drop_alert(
    production_model, analyst, settings
):
    settings.MONITOR_MIN_OUTCOMES = 40
    rows = predict(analyst, site_days(60, seed=22))
    median = sorted(p.probability for p in rows)[len(rows) // 2]
    # Floods exactly where the model said "unlikely": the ranking is inverted.
    record_outcomes(analyst, rows, flooded=lambda p: p.probability < median)

    report = services.monitoring_report_create(window_minutes=60)

    [alert] = active(AlertKind.ACCURACY_DROP)
    assert alert.subject == str(production_model)
    assert alert.severity == AlertSeverity.CRITICAL
    assert report.metrics["accuracy"]["roc_auc"] < 0.5
    assert "below the training" in alert.message


def test_no_predictions_raise_a_no_traffic_alert_and_traffic_resolves_it(
    production_model, analyst, alerts_mailed_to, mailoutbox
):
    report = services.monitoring_report_create(window_minutes=60)

    [alert] = active(AlertKind.NO_TRAFFIC)
    assert alert.severity == AlertSeverity.CRITICAL
    assert "none has ever been made" in alert.message
    assert report.metrics["traffic"]["total"] == 0
    assert report.metrics["drift"]["status"] == "no_data"
    assert report.metrics["accuracy"]["status"] == "no_outcomes"
    assert len(mailoutbox) == 1

    predict(analyst, site_days(5, seed=23))
    services.monitoring_report_create(window_minutes=60)

    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert active(AlertKind.NO_TRAFFIC) == []


def test_the_no_traffic_alert_can_be_turned_off(production_model, settings):
    settings.MONITOR_NO_TRAFFIC_MINUTES = 0
    services.monitoring_report_create(window_minutes=60)
    assert not Alert.objects.exists()


def test_a_check_without_a_production_model_still_reports(db):
    report = services.monitoring_report_create(window_minutes=60)
    assert report.model_version is None
    assert report.metrics["drift"]["status"] == "no_model"
    assert active(AlertKind.NO_TRAFFIC)


def test_acknowledge_keeps_the_alert_active_and_resolve_lets_a_new_one_open(
    production_model, alerts_mailed_to, mailoutbox
):
    operator = UserFactory(username="operator")
    services.monitoring_report_create(window_minutes=60)
    [alert] = active(AlertKind.NO_TRAFFIC)

    acknowledged = services.alert_acknowledge(alert=alert, user=operator)
    assert acknowledged.status == AlertStatus.ACKNOWLEDGED
    assert acknowledged.acknowledged_by == operator and acknowledged.acknowledged_at

    services.monitoring_report_create(window_minutes=60)
    [still] = active(AlertKind.NO_TRAFFIC)
    assert still.pk == alert.pk and still.occurrences == 2
    assert still.status == AlertStatus.ACKNOWLEDGED
    assert len(mailoutbox) == 1

    resolved = services.alert_resolve(alert=still, user=operator)
    assert resolved.status == AlertStatus.RESOLVED and resolved.resolved_by == operator
    with pytest.raises(ApplicationError) as error:
        services.alert_acknowledge(alert=resolved, user=operator)
    assert error.value.status_code == 409
    assert services.alert_resolve(alert=resolved, user=operator).resolved_by == operator

    services.monitoring_report_create(window_minutes=60)
    [reopened] = active(AlertKind.NO_TRAFFIC)
    assert reopened.pk != alert.pk and reopened.occurrences == 1
    assert len(mailoutbox) == 2


def test_slow_web_and_api_predictions_raise_a_latency_alert(production_model, analyst, settings):
    settings.MONITOR_P95_LATENCY_MS = 0.0
    predict(analyst, site_days(5, seed=24), source=Source.WEB)

    report = services.monitoring_report_create(window_minutes=60)

    [alert] = active(AlertKind.LATENCY)
    assert "p95 latency" in alert.message
    latency = report.metrics["latency_ms"]
    assert latency["by_source"]["web"]["n"] == 5
    assert latency["interactive"]["p50"] <= latency["interactive"]["p95"]


def test_failed_batch_rows_above_the_limit_raise_an_error_rate_alert(
    production_model, analyst, settings
):
    BatchJobFactory(
        owner=analyst,
        model_version=production_model,
        total_rows=100,
        processed_rows=100,
        failed_rows=20,
        progress_at=timezone.now(),
    )

    report = services.monitoring_report_create(window_minutes=60)

    [alert] = active(AlertKind.ERROR_RATE)
    assert "20 of 100 batch rows failed" in alert.message
    assert report.metrics["error_rate"]["rate"] == pytest.approx(0.2)


def test_a_mail_outage_never_breaks_the_check(production_model, settings, alerts_mailed_to):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = 1  # nothing listens here: the connection is refused

    report = services.monitoring_report_create(window_minutes=60)

    assert report.metrics["alerts"]["mailed"] is False
    assert active(AlertKind.NO_TRAFFIC)


def test_no_mail_without_recipients(production_model, mailoutbox):
    report = services.monitoring_report_create(window_minutes=60)
    assert report.metrics["alerts"]["new"] and mailoutbox == []


def test_a_window_shorter_than_a_minute_is_refused(db):
    with pytest.raises(ApplicationError) as error:
        services.monitoring_report_create(window_minutes=0)
    assert "window_minutes" in error.value.fields
    assert not MonitoringReport.objects.exists()


def test_the_scheduled_task_stores_a_report_over_the_configured_window(production_model, settings):
    settings.MONITOR_WINDOW_MINUTES = 15
    report_id = monitoring_check_task.apply().get()
    report = MonitoringReport.objects.get(pk=report_id)
    assert report.window_end - report.window_start == timedelta(minutes=15)
    assert report.model_version == production_model
    schedule = settings.CELERY_BEAT_SCHEDULE["monitoring-check"]
    assert schedule["task"] == "predictions.tasks.monitoring_check_task"
    assert schedule["schedule"] == 60.0 * settings.MONITOR_INTERVAL_MINUTES


def test_admin_actions_acknowledge_and_resolve_through_the_services(
    production_model, admin_client, admin_user
):
    services.monitoring_report_create(window_minutes=60)
    alert = Alert.objects.get()
    url = "/admin/modelops/alert/"

    admin_client.post(url, {"action": "acknowledge_alerts", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by == admin_user

    admin_client.post(url, {"action": "resolve_alerts", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by == admin_user
    assert admin_client.get(url + f"{alert.pk}/change/").status_code == 200
    report = MonitoringReport.objects.get()
    assert (
        admin_client.get(f"/admin/modelops/monitoringreport/{report.pk}/change/").status_code == 200
    )
    assert admin_client.get("/admin/modelops/monitoringreport/").status_code == 200


def test_outcomes_table_is_untouched_by_checks(production_model, analyst):
    rows = predict(analyst, site_days(5, seed=25))
    record_outcomes(analyst, rows, flooded=lambda p: True)
    services.monitoring_report_create(window_minutes=60)
    assert Outcome.objects.count() == 5 and Prediction.objects.count() == 5
