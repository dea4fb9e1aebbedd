"""Prometheus gauges of model operations, read from the database at each /metrics scrape.

``floodsite.metrics`` owns the scrape and the ``floodsite_database_up`` gauge; this app
registers ``database_families`` with it when Django starts (``modelops.apps``).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from mlcore.models import ModelVersion, Stage
from modelops.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    AlertKind,
    AlertSeverity,
    MonitoringReport,
)


def database_families() -> Iterator[GaugeMetricFamily]:
    """Open alerts, the versions serving, and the latest check's drift, read now."""
    counts = Tally(
        {
            (row["kind"], row["severity"], row["status"]): row["n"]
            for row in Alert.objects.filter(status__in=ACTIVE_ALERT_STATUSES)
            .values("kind", "severity", "status")
            .annotate(n=Count("id"))
            .order_by()
        }
    )
    alerts = GaugeMetricFamily(
        "floodsite_alerts_open",
        "Monitoring alerts not yet resolved (open or acknowledged), by kind and severity.",
        labels=["kind", "severity", "status"],
    )
    for kind in AlertKind.values:
        for severity in AlertSeverity.values:
            for status in ACTIVE_ALERT_STATUSES:
                alerts.add_metric([kind, severity, status], counts[(kind, severity, status)])
    yield alerts

    versions = GaugeMetricFamily(
        "floodsite_model_info",
        "1 for each model version in production, canary or shadow (canary_percent: share "
        "of users a canary answers).",
        labels=["name", "model_version", "stage", "format", "canary_percent"],
    )
    live = (Stage.PRODUCTION, Stage.CANARY, Stage.SHADOW)
    for name, version, stage, fmt, percent in ModelVersion.objects.filter(
        stage__in=live
    ).values_list("name", "version", "stage", "format", "canary_percent"):
        versions.add_metric([name, f"{name} v{version}", stage, fmt, str(percent)], 1)
    yield versions

    report = (
        MonitoringReport.objects.order_by("-created_at", "-id")
        .values_list("created_at", "metrics")
        .first()
    )
    if report is None:
        return
    created_at, report_metrics = report
    checked = GaugeMetricFamily(
        "floodsite_monitoring_last_check_timestamp_seconds",
        "When the latest monitoring check ran (Unix time).",
    )
    checked.add_metric([], created_at.timestamp())
    yield checked
    yield from _drift_families(report_metrics.get("drift") or {})


def _drift_families(drift: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    if drift.get("status") != "ok":
        return
    version = str(drift.get("model_version", ""))
    psi = GaugeMetricFamily(
        "floodsite_drift_psi",
        "Population stability index of each input feature in the latest monitoring check, "
        "against the training data (above MONITOR_PSI_THRESHOLD raises a drift alert).",
        labels=["feature", "model_version"],
    )
    for feature, entry in sorted((drift.get("features") or {}).items()):
        value = entry.get("psi") if isinstance(entry, dict) else None
        if isinstance(value, int | float):
            psi.add_metric([feature, version], float(value))
    yield psi
    probability = (drift.get("probability") or {}).get("psi")
    if isinstance(probability, int | float):
        family = GaugeMetricFamily(
            "floodsite_drift_probability_psi",
            "Population stability index of the predicted probability in the latest check.",
            labels=["model_version"],
        )
        family.add_metric([version], float(probability))
        yield family
    rows = GaugeMetricFamily(
        "floodsite_drift_rows",
        "Predictions the latest check measured drift on.",
        labels=["model_version"],
    )
    rows.add_metric([version], float(drift.get("n") or 0))
    yield rows
