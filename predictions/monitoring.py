"""Model monitoring: accuracy on outcomes, drift against training, service health and alerts.

``monitoring_report_create`` is the scheduled check (Celery beat and ``run_monitoring``). It
looks at the audit log over a window, stores a MonitoringReport, and raises, repeats or
resolves Alerts against the MONITOR_* thresholds in settings:

* drift: PSI of a feature (or of the predicted probability) above MONITOR_PSI_THRESHOLD,
  judged only when the window holds at least MONITOR_DRIFT_MIN_ROWS predictions of the
  production version, since PSI over a handful of rows is noise;
* error_rate: the share of failed rows in batch jobs that made progress in the window, above
  MONITOR_ERROR_RATE. This is the only failure rate the service stores: web and API requests
  that fail are not logged as rows, so their rate is left to the coming /metrics endpoint;
* latency: p95 of ``latency_ms`` of web and API predictions above MONITOR_P95_LATENCY_MS
  (batch rows carry their chunk's time divided by its rows, which says nothing about users);
* accuracy_drop: ROC-AUC on outcomes more than MONITOR_ACCURACY_DROP below the training
  ROC-AUC in the manifest, once MONITOR_MIN_OUTCOMES outcomes of both classes exist. Ground
  truth arrives days after a prediction, so accuracy covers MONITOR_ACCURACY_WINDOW_DAYS;
* no_traffic: no prediction at all for MONITOR_NO_TRAFFIC_MINUTES (0 turns it off).

While an alert is open or acknowledged, a check that finds the same (kind, subject) again
bumps it rather than adding one, and only new alerts are e-mailed. An alert whose condition a
later check evaluated and found gone is resolved automatically (``resolved_by`` empty); a kind
the check could not judge (too few rows, no reference, no outcomes) leaves its alerts alone.
"""

from __future__ import annotations

import smtplib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum, Window
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from accounts.roles import VIEW_MONITORING
from floodsite.exceptions import ApplicationError
from mlcore.engine import accuracy, drift
from mlcore.models import ModelVersion, Stage
from predictions.models import (
    ACTIVE_ALERT_STATUSES,
    Alert,
    AlertKind,
    AlertSeverity,
    AlertStatus,
    BatchJob,
    MonitoringReport,
    Outcome,
    Prediction,
    Source,
)

logger = structlog.get_logger(__name__)

# Newest rows read per check for drift and latency: enough for stable PSI/KS and percentiles,
# small enough that a busy hour never loads the whole log into memory.
MAX_ROWS = 50_000
PROBABILITY_SUBJECT = "predicted probability"
INTERACTIVE_SOURCES = (Source.WEB, Source.API)


@dataclass(frozen=True)
class Finding:
    """One condition a check found out of bounds; becomes (or repeats) an Alert."""

    kind: str
    subject: str
    severity: str
    message: str


@dataclass
class MonitoringResult:
    """What a check computed, before anything is stored."""

    window_start: datetime
    window_end: datetime
    model_version: ModelVersion | None
    metrics: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    # Kinds the check could judge; only their alerts may be resolved automatically.
    evaluated: set[str] = field(default_factory=set)


def _window(since: datetime | None, until: datetime | None) -> dict[str, str | None]:
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
        "window": _window(since, until),
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
        "window": _window(since, until),
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


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return {"n": len(values), "p50": float(p50), "p95": float(p95)}


def _traffic(*, since: datetime, until: datetime) -> dict[str, Any]:
    window = Prediction.objects.filter(created_at__gte=since, created_at__lt=until)
    by_source = dict(
        window.values("source").annotate(n=Count("id")).order_by().values_list("source", "n")
    )
    by_band = dict(
        window.values("risk_band").annotate(n=Count("id")).order_by().values_list("risk_band", "n")
    )
    return {"total": sum(by_source.values()), "by_source": by_source, "by_band": by_band}


def _latency(*, since: datetime, until: datetime) -> dict[str, Any]:
    rows = list(
        Prediction.objects.filter(created_at__gte=since, created_at__lt=until)
        .order_by("-created_at")
        .values_list("source", "latency_ms")[:MAX_ROWS]
    )
    by_source: dict[str, list[float]] = {}
    for source, latency_ms in rows:
        by_source.setdefault(source, []).append(latency_ms)
    interactive = [ms for source in INTERACTIVE_SOURCES for ms in by_source.get(source, [])]
    return {
        "all": _percentiles([ms for _, ms in rows]),
        "interactive": _percentiles(interactive),
        "by_source": {source: _percentiles(values) for source, values in by_source.items()},
        "max_rows": MAX_ROWS,
    }


def _batch_errors(*, since: datetime, until: datetime) -> dict[str, Any]:
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


def _drift_findings(result: MonitoringResult, drift_block: dict[str, Any]) -> None:
    threshold = settings.MONITOR_PSI_THRESHOLD
    if drift_block["status"] != "ok":
        return
    if drift_block["n"] < settings.MONITOR_DRIFT_MIN_ROWS:
        drift_block["alerting"] = (
            f"not judged: {drift_block['n']} predictions, fewer than "
            f"MONITOR_DRIFT_MIN_ROWS={settings.MONITOR_DRIFT_MIN_ROWS}"
        )
        return
    result.evaluated.add(AlertKind.DRIFT)
    entries = dict(drift_block["features"])
    entries[PROBABILITY_SUBJECT] = drift_block["probability"]
    for subject, entry in entries.items():
        psi_value = entry.get("psi")
        if psi_value is None or psi_value <= threshold:
            continue
        means = ""
        if entry.get("mean") is not None and entry.get("reference_mean") is not None:
            means = f"; recent mean {entry['mean']:.3g} vs training {entry['reference_mean']:.3g}"
        ks_text = f", KS {entry['ks']:.2f}" if entry.get("ks") is not None else ""
        if entry.get("note"):
            means += f" ({entry['note']})"
        result.findings.append(
            Finding(
                kind=AlertKind.DRIFT,
                subject=subject,
                severity=AlertSeverity.CRITICAL
                if psi_value > 2 * threshold
                else AlertSeverity.WARNING,
                message=f"{subject} drifted in {drift_block['model_version']}: PSI "
                f"{psi_value:.2f} > {threshold}{ks_text} over {drift_block['n']} predictions"
                f"{means}.",
            )
        )


def _health_findings(result: MonitoringResult) -> None:
    metrics = result.metrics
    errors = metrics["error_rate"]
    if errors["rate"] is not None:
        result.evaluated.add(AlertKind.ERROR_RATE)
        if errors["rate"] > settings.MONITOR_ERROR_RATE:
            result.findings.append(
                Finding(
                    kind=AlertKind.ERROR_RATE,
                    subject="batch rows",
                    severity=AlertSeverity.WARNING,
                    message=f"{errors['failed_rows']} of {errors['rows']} batch rows failed "
                    f"({errors['rate']:.1%} > {settings.MONITOR_ERROR_RATE:.1%}).",
                )
            )
    latency = metrics["latency_ms"]["interactive"]
    if latency["p95"] is not None:
        result.evaluated.add(AlertKind.LATENCY)
        if latency["p95"] > settings.MONITOR_P95_LATENCY_MS:
            result.findings.append(
                Finding(
                    kind=AlertKind.LATENCY,
                    subject="web and API p95",
                    severity=AlertSeverity.WARNING,
                    message=f"p95 latency of {latency['n']} web/API predictions is "
                    f"{latency['p95']:.0f} ms > {settings.MONITOR_P95_LATENCY_MS:.0f} ms.",
                )
            )
    minutes = settings.MONITOR_NO_TRAFFIC_MINUTES
    if minutes > 0:
        result.evaluated.add(AlertKind.NO_TRAFFIC)
        last = metrics["last_prediction_at"]
        quiet_since = result.window_end - timedelta(minutes=minutes)
        if last is None or datetime.fromisoformat(last) < quiet_since:
            when = f"the last was at {last}" if last else "none has ever been made"
            result.findings.append(
                Finding(
                    kind=AlertKind.NO_TRAFFIC,
                    subject="",
                    severity=AlertSeverity.CRITICAL,
                    message=f"No predictions for {minutes} minutes; {when}.",
                )
            )


def _accuracy_findings(result: MonitoringResult, block: dict[str, Any]) -> None:
    auc = block.get("roc_auc")
    trained = block.get("training_roc_auc")
    if block["n"] < settings.MONITOR_MIN_OUTCOMES:
        block["alerting"] = (
            f"not judged: {block['n']} outcomes, fewer than "
            f"MONITOR_MIN_OUTCOMES={settings.MONITOR_MIN_OUTCOMES}"
        )
        return
    if auc is None or trained is None:
        block["alerting"] = "not judged: " + (
            block.get("roc_auc_reason") or "the manifest records no training ROC-AUC"
        )
        return
    result.evaluated.add(AlertKind.ACCURACY_DROP)
    drop = trained - auc
    if drop > settings.MONITOR_ACCURACY_DROP:
        result.findings.append(
            Finding(
                kind=AlertKind.ACCURACY_DROP,
                subject=block["model_version"],
                severity=AlertSeverity.CRITICAL,
                message=f"{block['model_version']}: ROC-AUC on {block['n']} outcomes is "
                f"{auc:.3f}, {drop:.3f} below the training {trained:.3f} "
                f"(allowed drop {settings.MONITOR_ACCURACY_DROP}).",
            )
        )


def monitoring_evaluate(*, window_minutes: int, now: datetime | None = None) -> MonitoringResult:
    """Compute one check over the last ``window_minutes``, storing nothing (the dry run)."""
    if window_minutes < 1:
        raise ApplicationError(
            "The monitoring window must be at least one minute.",
            fields={"window_minutes": "must be 1 or more"},
        )
    end = now or timezone.now()
    start = end - timedelta(minutes=window_minutes)
    production = ModelVersion.objects.filter(
        name=settings.FLOODSITE_MODEL_NAME, stage=Stage.PRODUCTION
    ).first()
    last = Prediction.objects.order_by("-created_at").values_list("created_at", flat=True).first()
    metrics: dict[str, Any] = {
        "window": _window(start, end),
        "model_version": str(production) if production else None,
        "traffic": _traffic(since=start, until=end),
        "latency_ms": _latency(since=start, until=end),
        "error_rate": _batch_errors(since=start, until=end),
        "last_prediction_at": last.isoformat() if last else None,
    }
    result = MonitoringResult(start, end, production, metrics)
    if production is None:
        reason = f"no production version of {settings.FLOODSITE_MODEL_NAME!r}"
        metrics["accuracy"] = {"status": "no_model", "reason": reason}
        metrics["drift"] = {"status": "no_model", "reason": reason}
    else:
        since = end - timedelta(days=settings.MONITOR_ACCURACY_WINDOW_DAYS)
        metrics["accuracy"] = model_accuracy_get(model_version=production, since=since, until=end)
        metrics["drift"] = model_drift_get(model_version=production, since=start, until=end)
        _accuracy_findings(result, metrics["accuracy"])
        _drift_findings(result, metrics["drift"])
    _health_findings(result)
    metrics["findings"] = [asdict(finding) for finding in result.findings]
    return result


def _alert_raise(
    *, finding: Finding, report: MonitoringReport, now: datetime
) -> tuple[Alert, bool]:
    """The open alert for this condition, bumped, or a new one; True when it is new."""
    active = Alert.objects.filter(
        kind=finding.kind, subject=finding.subject, status__in=ACTIVE_ALERT_STATUSES
    )
    repeat = {
        "last_seen": now,
        "occurrences": F("occurrences") + 1,
        "message": finding.message,
        "severity": finding.severity,
        "report": report,
    }
    with transaction.atomic():
        existing = active.select_for_update().first()
        if existing is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=finding.kind,
                        subject=finding.subject,
                        severity=finding.severity,
                        message=finding.message,
                        first_seen=now,
                        last_seen=now,
                        report=report,
                    )
                return alert, True
            except IntegrityError:
                # A concurrent check created it between our read and insert: repeat that one.
                existing = active.select_for_update().get()
        Alert.objects.filter(pk=existing.pk).update(**repeat)
    existing.refresh_from_db()
    return existing, False


def _alerts_resolve_cleared(*, result: MonitoringResult, now: datetime) -> list[Alert]:
    still = {(finding.kind, finding.subject) for finding in result.findings}
    cleared = [
        alert
        for alert in Alert.objects.filter(
            status__in=ACTIVE_ALERT_STATUSES, kind__in=result.evaluated
        )
        if (alert.kind, alert.subject) not in still
    ]
    for alert in cleared:
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = now
        alert.resolved_by = None
        alert.save(update_fields=["status", "resolved_at", "resolved_by"])
    return cleared


def _alerts_mail(alerts: list[Alert]) -> bool:
    """One e-mail listing the new alerts; a mail outage is logged, never raised."""
    recipients = list(settings.MONITOR_ALERT_EMAILS)
    if not alerts or not recipients:
        return False
    lines = [
        f"[{alert.get_severity_display()}] {alert.get_kind_display()}"
        + (f" - {alert.subject}" if alert.subject else "")
        + f"\n{alert.message}"
        for alert in alerts
    ]
    body = (
        "floodsite monitoring raised new alerts:\n\n"
        + "\n\n".join(lines)
        + "\n\nAcknowledge or resolve them in the admin (Predictions > Alerts). Repeats of an "
        "open alert are not e-mailed again."
    )
    subject = f"[floodsite] {len(alerts)} new monitoring alert{'s' if len(alerts) > 1 else ''}"
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except (smtplib.SMTPException, OSError):
        logger.exception("monitoring_alert_mail_failed", alerts=[alert.pk for alert in alerts])
        return False
    return True


def monitoring_report_create(
    *, window_minutes: int, now: datetime | None = None
) -> MonitoringReport:
    """Run one check for the production model, store its report and raise/resolve alerts.

    ``report.metrics["alerts"]`` lists the ids of new, repeated and resolved alerts, and
    whether the new ones were e-mailed.
    """
    result = monitoring_evaluate(window_minutes=window_minutes, now=now)
    checked_at = result.window_end
    report = MonitoringReport.objects.create(
        created_at=checked_at,
        window_start=result.window_start,
        window_end=result.window_end,
        model_version=result.model_version,
        metrics=result.metrics,
    )
    new: list[Alert] = []
    repeated: list[Alert] = []
    for finding in result.findings:
        alert, created = _alert_raise(finding=finding, report=report, now=checked_at)
        (new if created else repeated).append(alert)
    resolved = _alerts_resolve_cleared(result=result, now=checked_at)
    mailed = _alerts_mail(new)
    report.metrics["alerts"] = {
        "new": [alert.pk for alert in new],
        "repeated": [alert.pk for alert in repeated],
        "resolved": [alert.pk for alert in resolved],
        "mailed": mailed,
    }
    report.save(update_fields=["metrics"])
    logger.info(
        "monitoring_check",
        report=report.pk,
        model=result.metrics["model_version"],
        new=len(new),
        repeated=len(repeated),
        resolved=len(resolved),
    )
    return report


def alert_acknowledge(*, alert: Alert, user: Any) -> Alert:
    """Someone is on it: the alert stays active (and de-duplicating) but is marked as seen."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status == AlertStatus.RESOLVED:
            raise ApplicationError(
                "This alert is already resolved.", code="alert_resolved", status_code=409
            )
        if alert.status == AlertStatus.OPEN:
            alert.status = AlertStatus.ACKNOWLEDGED
            alert.acknowledged_by = user
            alert.acknowledged_at = timezone.now()
            alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])
    return alert


def alert_resolve(*, alert: Alert, user: Any) -> Alert:
    """Close the alert; if the condition returns, the next check opens (and mails) a new one."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != AlertStatus.RESOLVED:
            alert.status = AlertStatus.RESOLVED
            alert.resolved_by = user
            alert.resolved_at = timezone.now()
            alert.save(update_fields=["status", "resolved_by", "resolved_at"])
    return alert


# --- Reads for the monitoring dashboard -----------------------------------------------------

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


def batch_error_rate_get(*, since: datetime, until: datetime) -> dict[str, Any]:
    """Failed / processed rows of batch jobs that made progress in [since, until)."""
    return _batch_errors(since=since, until=until)


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
