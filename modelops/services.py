"""Monitoring writes: store a check's report, raise, repeat or resolve its alerts, mail them.

A person acknowledges or resolves an alert here too (dashboard and admin call the same
functions). What a check measures is ``modelops.checks``.
"""

from __future__ import annotations

import smtplib
from datetime import datetime

import structlog
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from floodsite.exceptions import ApplicationError
from modelops.checks import Finding, MonitoringResult, monitoring_evaluate
from modelops.models import ACTIVE_ALERT_STATUSES, Alert, AlertStatus, MonitoringReport

logger = structlog.get_logger(__name__)


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
        + "\n\nAcknowledge or resolve them in the admin (Model operations > Alerts). Repeats of an "
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


def alert_acknowledge(*, alert: Alert, user: User) -> Alert:
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


def alert_resolve(*, alert: Alert, user: User) -> Alert:
    """Close the alert; if the condition returns, the next check opens (and mails) a new one."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)
        if alert.status != AlertStatus.RESOLVED:
            alert.status = AlertStatus.RESOLVED
            alert.resolved_by = user
            alert.resolved_at = timezone.now()
            alert.save(update_fields=["status", "resolved_by", "resolved_at"])
    return alert
