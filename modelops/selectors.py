"""Monitoring reads: accuracy on outcomes, drift against training, stored checks and alerts.

The scheduled check (``modelops.checks``) and the dashboard (``modelops.views``) both read
through these; nothing here writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, Sum, Window
from django.db.models.functions import TruncDay, TruncHour

from accounts.roles import VIEW_MONITORING
from floodsite.exceptions import ApplicationError
from mlcore.engine import accuracy, drift
from mlcore.models import ModelVersion, Stage
from modelops.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    AlertSeverity,
    AlertStatus,
    MonitoringReport,
)
from predictions.models import BatchJob, Outcome, Prediction

# Newest rows read per check for drift and latency: enough for stable PSI/KS and percentiles,
# small enough that a busy hour never loads the whole log into memory.
MAX_ROWS = 50_000
PROBABILITY_SUBJECT = "predicted probability"


def window_json(since: datetime | None, until: datetime | None) -> dict[str, str | None]:
    return {
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
    }


def _thresholds(model_version: ModelVersion) -> list[tuple[str, float]]:
    bands = model_version.manifest.get("risk_bands") or []
    return [(band["name"], float(band["lower"])) for band in bands]


def model_accuracy_get(
    *,
    model_version: ModelVersion,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Accuracy of one version on the outcomes of its predictions made in [since, until).

    Always a result: ``status`` is "ok", "no_outcomes" or "empty_window", with a ``reason``.
    """
    result: dict[str, Any] = {
        "model_version": str(model_version),
        "model_version_id": model_version.pk,
        "window": window_json(since, until),
        "training_roc_auc": model_version.metrics.get("roc_auc"),
    }
    if since and until and since >= until:
        result.update(
            accuracy.accuracy_report([], [], []),
            status="empty_window",
            reason="the window is empty: its start is not before its end",
            predictions=0,
        )
        return result
    predictions = Prediction.objects.filter(model_version=model_version)
    if since:
        predictions = predictions.filter(created_at__gte=since)
    if until:
        predictions = predictions.filter(created_at__lt=until)
    pairs = list(
        Outcome.objects.filter(prediction__in=predictions).values_list(
            "flooded", "prediction__probability"
        )
    )
    result.update(
        accuracy.accuracy_report(
            [int(flooded) for flooded, _ in pairs],
            [probability for _, probability in pairs],
            _thresholds(model_version),
        ),
        predictions=predictions.count(),
    )
    return result


def model_accuracy_list(
    *, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Accuracy per model version that has outcomes for predictions made in the window."""
    outcomes = Outcome.objects.all()
    if since:
        outcomes = outcomes.filter(prediction__created_at__gte=since)
    if until:
        outcomes = outcomes.filter(prediction__created_at__lt=until)
    version_ids = outcomes.values_list("prediction__model_version", flat=True).distinct()
    return [
        model_accuracy_get(model_version=version, since=since, until=until)
        for version in ModelVersion.objects.filter(pk__in=version_ids)
    ]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def model_drift_get(
    *, model_version: ModelVersion, since: datetime, until: datetime, max_rows: int = MAX_ROWS
) -> dict[str, Any]:
    """PSI and KS per feature, and of the predicted probability, against the training reference.

    Reads the newest ``max_rows`` predictions of this version in [since, until), from every
    source. ``status`` is "ok", "unknown" (no reference statistics in the manifest),
    "no_data" or "empty_window", each but "ok" with a ``reason``.
    """
    manifest = model_version.manifest
    reference = manifest.get("reference") or {}
    features = [feature["name"] for feature in manifest.get("features") or []]
    result: dict[str, Any] = {
        "status": "ok",
        "model_version": str(model_version),
        "window": window_json(since, until),
        "max_rows": max_rows,
        "n": 0,
        "capped": False,
        "features": {},
        "probability": {},
    }
    if since >= until:
        result.update(
            status="empty_window", reason="the window is empty: its start is not before its end"
        )
        return result
    if not any(name in reference for name in features):
        result.update(
            status="unknown",
            reason=f"{model_version} has no reference statistics in its manifest, so drift "
            "cannot be measured; retrain it to record them",
        )
        return result
    rows = list(
        Prediction.objects.filter(
            model_version=model_version, created_at__gte=since, created_at__lt=until
        )
        .order_by("-created_at")
        .values_list("inputs", "probability")[:max_rows]
    )
    result.update(n=len(rows), capped=len(rows) >= max_rows)
    if not rows:
        result.update(status="no_data", reason="no predictions of this version in the window")
        return result
    matrix = np.array(
        [[_number(inputs.get(name)) for name in features] for inputs, _ in rows],
        dtype=np.float64,
    )
    result["features"] = drift.drift_report(reference, matrix, features)
    probabilities = np.array([probability for _, probability in rows], dtype=np.float64)
    probability_reference = reference.get(drift.PROBABILITY_KEY)
    if isinstance(probability_reference, dict):
        psi_value = drift.psi(probability_reference, probabilities)
        result["probability"] = {
            "psi": psi_value,
            "ks": drift.ks(probability_reference, probabilities),
            "level": drift.level_for(psi_value),
            "mean": float(probabilities.mean()),
            "reference_mean": probability_reference.get("mean"),
            **_reference_backend(model_version, probability_reference),
        }
    else:
        result["probability"] = {
            "psi": None,
            "ks": None,
            "level": "unknown",
            "reason": "the manifest holds no reference for predicted probabilities",
        }
    return result


def _reference_backend(model_version: ModelVersion, entry: dict[str, Any]) -> dict[str, Any]:
    """Which backend measured the probability reference, and a note when it is not the one
    serving: versions registered before references were measured like serving hold
    scikit-learn's float64 outputs, and ONNX's float32 ones can read as drift against them."""
    # References without a backend were all measured by scikit-learn at training time.
    measured = entry.get("backend") or "sklearn"
    serving = "onnx" if model_version.onnx_artifact else "sklearn"
    block: dict[str, Any] = {"reference_backend": measured}
    if measured != serving:
        block["note"] = (
            f"its reference was measured with {measured} but {model_version} serves through "
            f"{serving}, so small numeric differences can read as drift; retrain it to "
            "measure the reference like serving"
        )
    return block


def batch_error_rate_get(*, since: datetime, until: datetime) -> dict[str, Any]:
    """Failed / processed rows of batch jobs that made progress in [since, until)."""
    totals = BatchJob.objects.filter(progress_at__gte=since, progress_at__lt=until).aggregate(
        jobs=Count("id"), rows=Sum("processed_rows"), failed=Sum("failed_rows")
    )
    rows = totals["rows"] or 0
    failed = totals["failed"] or 0
    return {
        "definition": "failed rows / processed rows of batch jobs that made progress in the "
        "window (whole jobs counted)",
        "jobs": totals["jobs"],
        "rows": rows,
        "failed_rows": failed,
        "rate": failed / rows if rows else None,
    }


# --- the dashboard's reads ------------------------------------------------------------------

# Most points a chart of stored checks draws: a 30-day window of 5-minute checks is thinned
# evenly to this many rather than read whole.
SERIES_POINTS = 240
_SEVERITY_ORDER: dict[str, int] = {AlertSeverity.CRITICAL: 0, AlertSeverity.WARNING: 1}
_SERIES_KEYS = {
    "p50": "metrics__latency_ms__interactive__p50",
    "p95": "metrics__latency_ms__interactive__p95",
    "latency_n": "metrics__latency_ms__interactive__n",
    "error_rate": "metrics__error_rate__rate",
    "batch_rows": "metrics__error_rate__rows",
    "failed_rows": "metrics__error_rate__failed_rows",
    "drift_features": "metrics__drift__features",
    "probability_psi": "metrics__drift__probability__psi",
}


def risk_bands_in_production() -> list[dict[str, Any]]:
    """The risk bands the production version's manifest declares (none without one)."""
    production = ModelVersion.objects.filter(
        name=settings.FLOODSITE_MODEL_NAME, stage=Stage.PRODUCTION
    ).first()
    return (production.manifest.get("risk_bands") if production else None) or []


def user_can_monitor(user: Any) -> bool:
    """Auditors and admins (VIEW_MONITORING, accounts.roles) see monitoring and its alerts."""
    if user is None or not user.is_authenticated:
        return False
    return bool(user.has_perm(VIEW_MONITORING))


def prediction_band_series(
    *, since: datetime, until: datetime, bucket: str = "hour"
) -> list[dict[str, Any]]:
    """Predictions made in [since, until) counted per time bucket ("hour" or "day") and band.

    One GROUP BY over the created_at index; buckets without predictions are absent.
    """
    trunc = {"hour": TruncHour, "day": TruncDay}[bucket]
    rows = (
        Prediction.objects.filter(created_at__gte=since, created_at__lt=until)
        .annotate(bucket=trunc("created_at"))
        .values("bucket", "risk_band")
        .annotate(n=Count("id"))
        .order_by("bucket", "risk_band")
    )
    return [{"bucket": row["bucket"], "band": row["risk_band"], "n": row["n"]} for row in rows]


def prediction_exists(*, since: datetime, until: datetime) -> bool:
    return Prediction.objects.filter(created_at__gte=since, created_at__lt=until).exists()


def monitoring_report_latest(
    *, since: datetime | None = None, until: datetime | None = None
) -> MonitoringReport | None:
    reports = MonitoringReport.objects.select_related("model_version")
    if since:
        reports = reports.filter(created_at__gte=since)
    if until:
        reports = reports.filter(created_at__lt=until)
    return reports.order_by("-created_at", "-id").first()


def monitoring_report_series(
    *, since: datetime, until: datetime, points: int = SERIES_POINTS
) -> list[dict[str, Any]]:
    """Latency, batch error rate and PSI per subject of each check stored in [since, until).

    Oldest first, thinned evenly to at most ``points`` checks (the newest always kept). Only
    the JSON keys the charts draw are read, never whole reports.
    """
    ids = list(
        MonitoringReport.objects.filter(created_at__gte=since, created_at__lt=until)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
    )
    if len(ids) > points > 1:
        step = (len(ids) - 1) / (points - 1)
        ids = sorted({ids[round(i * step)] for i in range(points)})
    rows = (
        MonitoringReport.objects.filter(pk__in=ids)
        .order_by("created_at", "id")
        .values("id", "created_at", *_SERIES_KEYS.values())
    )
    series = []
    for row in rows:
        point = {"id": row["id"], "created_at": row["created_at"]}
        point.update({name: row[key] for name, key in _SERIES_KEYS.items()})
        psi_by_subject = {
            subject: entry.get("psi")
            for subject, entry in (point.pop("drift_features") or {}).items()
            if isinstance(entry, dict)
        }
        probability_psi = point.pop("probability_psi")
        if probability_psi is not None:
            psi_by_subject[PROBABILITY_SUBJECT] = probability_psi
        point["psi"] = psi_by_subject
        series.append(point)
    return series


def alert_list_active() -> list[Alert]:
    """Open and acknowledged alerts: critical first, then the most recently seen."""
    alerts = list(
        Alert.objects.filter(status__in=ACTIVE_ALERT_STATUSES).select_related("acknowledged_by")
    )
    alerts.sort(key=lambda alert: alert.last_seen, reverse=True)
    alerts.sort(key=lambda alert: _SEVERITY_ORDER.get(alert.severity, 2))
    return alerts


def alert_list_seen(*, kind: str, since: datetime) -> list[Alert]:
    """Alerts of one kind, whatever their status, last seen at or after ``since``."""
    return list(
        Alert.objects.filter(kind=kind, last_seen__gte=since).select_related(
            "acknowledged_by", "resolved_by"
        )[:20]
    )


def alert_get(*, alert_id: int) -> Alert:
    try:
        return Alert.objects.get(pk=alert_id)
    except Alert.DoesNotExist as exc:
        raise ApplicationError(
            "There is no such alert.", code="not_found", status_code=404
        ) from exc


def alert_banner_get(*, limit: int = 3) -> dict[str, Any]:
    """The newest open alerts and how many are open, in one query (a window count)."""
    alerts = list(
        Alert.objects.filter(status=AlertStatus.OPEN)
        .annotate(open_total=Window(Count("id")))
        .order_by("-last_seen", "-id")[:limit]
    )
    return {"total": alerts[0].open_total if alerts else 0, "alerts": alerts}
