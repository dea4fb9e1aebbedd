"""Model operations: monitoring reports and alerts, and retraining jobs.

These models moved here from predictions (MonitoringReport, Alert) and mlcore (RetrainJob);
they keep the tables they had there (``db_table``), so no row moved.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from mlcore.models import ModelVersion


class MonitoringReport(models.Model):
    """One monitoring check: traffic, errors, latency, accuracy and drift over a time window.

    ``metrics`` holds the whole computed result (see modelops.checks), so a report can
    be read back exactly as the check saw it, whatever happens to the data later.
    """

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="monitoring_reports",
        help_text="The production version at the time of the check (empty if none).",
    )
    metrics = models.JSONField(default=dict)

    class Meta:
        db_table = "predictions_monitoringreport"  # the table it had in predictions
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["-created_at"], name="monitoring_report_created")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(window_start__lte=models.F("window_end")),
                name="monitoring_report_window_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"Monitoring {self.window_start:%Y-%m-%d %H:%M} to {self.window_end:%H:%M}"


class AlertKind(models.TextChoices):
    DRIFT = "drift", "Input or output drift"
    ERROR_RATE = "error_rate", "Batch row error rate"
    LATENCY = "latency", "Slow predictions"
    ACCURACY_DROP = "accuracy_drop", "Accuracy drop"
    NO_TRAFFIC = "no_traffic", "No traffic"


class AlertSeverity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


ACTIVE_ALERT_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class Alert(models.Model):
    """Something a monitoring check found out of bounds, kept once while it is unresolved.

    At most one open or acknowledged alert exists per (kind, subject); a check that finds the
    same condition again bumps ``last_seen`` and ``occurrences`` instead of adding a row.
    """

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    severity = models.CharField(
        max_length=10, choices=AlertSeverity.choices, default=AlertSeverity.WARNING
    )
    status = models.CharField(max_length=12, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    subject = models.CharField(
        max_length=200, blank=True, help_text="What the alert is about, e.g. a feature name."
    )
    message = models.TextField()
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    occurrences = models.PositiveIntegerField(default=1)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when a later check found the condition gone and resolved it.",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    report = models.ForeignKey(
        MonitoringReport,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="alerts",
        help_text="The latest check that saw the condition.",
    )

    class Meta:
        db_table = "predictions_alert"
        ordering = ["-last_seen", "-id"]
        indexes = [
            models.Index(fields=["status", "-last_seen"], name="alert_status_last_seen"),
            models.Index(fields=["kind", "status"], name="alert_kind_status"),
        ]
        constraints = [
            # De-duplication: one unresolved alert per condition, however many checks see it.
            models.UniqueConstraint(
                fields=["kind", "subject"],
                condition=models.Q(status__in=["open", "acknowledged"]),
                name="alert_one_active_per_kind_subject",
            )
        ]

    def __str__(self) -> str:
        subject = f" {self.subject}" if self.subject else ""
        return f"{self.get_kind_display()}{subject} ({self.get_status_display()})"


class RetrainStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RetrainJob(models.Model):
    """A retraining from the audit log run by a Celery worker, with its progress and result.

    Queued from admin; the worker reports each step (text and percent) so the page can show
    where it is. A success links the candidate it registered; a failure keeps the message.
    """

    name = models.SlugField(max_length=100, help_text="Model name to retrain.")
    include_original = models.BooleanField(
        default=False, help_text="Add the production model's original synthetic training data."
    )
    min_outcomes = models.PositiveIntegerField(
        default=0, help_text="Refuse to train on fewer outcomes than this (0: no minimum)."
    )
    status = models.CharField(
        max_length=10, choices=RetrainStatus.choices, default=RetrainStatus.QUEUED
    )
    step = models.CharField(max_length=300, blank=True)
    percent = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    error = models.TextField(blank=True)
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The candidate this job registered.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "mlcore_retrainjob"  # the table it had in mlcore
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(percent__gte=0) & Q(percent__lte=100), name="retrain_percent_0_100"
            )
        ]

    def __str__(self) -> str:
        return f"retrain {self.name} #{self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (RetrainStatus.SUCCEEDED, RetrainStatus.FAILED)
