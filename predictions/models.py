"""The audit log of every prediction, the observed outcomes, and idempotency records."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from mlcore.models import ModelVersion


class Source(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    BATCH = "batch", "Batch"


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit row."""


class PredictionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Predictions are an append-only audit log; they are never updated.")

    def delete(self):
        raise AppendOnlyError("Predictions are an append-only audit log; they are never deleted.")


class Prediction(models.Model):
    """One answered prediction: what was asked, which model answered, what it said, how fast.

    Written in the same transaction that produces the response, so nothing is ever returned
    without its audit row. Rows are never updated or deleted; ground truth goes in Outcome.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="predictions"
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions"
    )
    inputs = models.JSONField()
    probability = models.FloatField()
    label = models.CharField(max_length=50)
    risk_band = models.CharField(max_length=30)
    explanation = models.JSONField(default=list)
    out_of_range = models.JSONField(default=list)
    latency_ms = models.FloatField()
    request_id = models.CharField(max_length=128, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("view_all_predictions", "Can view and export every user's predictions")]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="prediction_user_created"),
            models.Index(fields=["-created_at"], name="prediction_created"),
            models.Index(fields=["risk_band", "-created_at"], name="prediction_band_created"),
            models.Index(fields=["source", "-created_at"], name="prediction_source_created"),
            models.Index(fields=["model_version", "-created_at"], name="prediction_model_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.risk_band} ({self.probability:.3f})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(
                "Predictions are an append-only audit log; they are never updated."
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Predictions are an append-only audit log; they are never deleted.")


class Outcome(models.Model):
    """What actually happened at a predicted site: the ground truth for accuracy and retraining."""

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="outcome")
    flooded = models.BooleanField()
    observed_at = models.DateTimeField()
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-observed_at", "-id"]
        indexes = [models.Index(fields=["observed_at"], name="outcome_observed")]

    def __str__(self) -> str:
        return f"{self.prediction_id}: {'flooded' if self.flooded else 'not flooded'}"


class IdempotencyRecord(models.Model):
    """The first answer to a POST with an Idempotency-Key, replayed for the same key and body."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"
