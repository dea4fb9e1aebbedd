"""The monitoring check: what it measures over a window and which findings arise.

``monitoring_evaluate`` is the scheduled check (Celery beat and ``run_monitoring``), storing
nothing: it looks at the audit log over a window and lists the findings against the MONITOR_*
thresholds in settings. ``modelops.services.monitoring_report_create`` stores its
MonitoringReport and raises, repeats or resolves Alerts from the findings:

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

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, Stage
from modelops.models import AlertKind, AlertSeverity
from modelops.selectors import (
    MAX_ROWS,
    PROBABILITY_SUBJECT,
    batch_error_rate_get,
    model_accuracy_get,
    model_drift_get,
    window_json,
)
from predictions.models import Prediction, Source

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
        "window": window_json(start, end),
        "model_version": str(production) if production else None,
        "traffic": _traffic(since=start, until=end),
        "latency_ms": _latency(since=start, until=end),
        "error_rate": batch_error_rate_get(since=start, until=end),
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
