"""The model registry: every trained version, its artifact, manifest and stage history."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Stage(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    # Scores every live request next to production; its answers are stored, never returned.
    SHADOW = "shadow", "Shadow"
    # Answers canary_percent of users (sticky per user) instead of production.
    CANARY = "canary", "Canary"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


class ArtifactFormat(models.TextChoices):
    JOBLIB = "joblib", "joblib (pickle)"
    SKOPS = "skops", "skops (no arbitrary code)"


def _artifact_path(instance: ModelVersion, filename: str) -> str:
    return f"models/{instance.name}/{filename}"


class ModelVersion(models.Model):
    """One trained model: an artifact pinned by SHA-256 plus the manifest that describes it.

    The manifest (feature schema, risk bands, metrics, reference statistics, library versions)
    is what forms, serializers and CSV validation are derived from.
    """

    name = models.SlugField(max_length=100)
    version = models.PositiveIntegerField()
    artifact = models.FileField(upload_to=_artifact_path, max_length=300)
    sha256 = models.CharField("SHA-256", max_length=64)
    format = models.CharField(max_length=10, choices=ArtifactFormat.choices)
    onnx_artifact = models.FileField(upload_to=_artifact_path, max_length=300, blank=True)
    onnx_sha256 = models.CharField("ONNX SHA-256", max_length=64, blank=True)
    manifest = models.JSONField()
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.CANDIDATE)
    canary_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of users (0-100, sticky per user) a canary version answers.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique"),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(stage="production"),
                name="one_production_version_per_name",
            ),
            models.UniqueConstraint(
                fields=["name"], condition=Q(stage="shadow"), name="one_shadow_version_per_name"
            ),
            models.UniqueConstraint(
                fields=["name"], condition=Q(stage="canary"), name="one_canary_version_per_name"
            ),
            models.CheckConstraint(
                condition=Q(canary_percent__gte=0) & Q(canary_percent__lte=100),
                name="canary_percent_0_100",
            ),
        ]
        indexes = [models.Index(fields=["name", "stage"], name="model_version_name_stage")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def label(self) -> str:
        return str(self)

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})


class StageChange(models.Model):
    """Who moved a version from one stage to another, when, why, and its metrics then."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="stage_changes"
    )
    from_stage = models.CharField(max_length=12, choices=Stage.choices, blank=True)
    to_stage = models.CharField(max_length=12, choices=Stage.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    reason = models.TextField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_version}: {self.from_stage or 'new'} -> {self.to_stage}"

    def gate_summary(self) -> str:
        """One line on the promotion gate's verdict recorded with a stage change."""
        gate = (self.metrics or {}).get("gate")
        if not gate:
            return "-"
        leak = (gate.get("failures") or {}).get("leakage")
        if not gate.get("sets"):
            verdict = "passed" if gate.get("passed") else ("FAILED" if leak else "no common rows")
            if leak and gate.get("forced"):
                verdict += ", forced"
            # Why each set of rows could not be used: features differ, no shared rows, ...
            why = [gate["note"]] if gate.get("note") else gate.get("unavailable", [])
            return "; ".join([verdict, *([leak] if leak else []), *why])
        first = gate["sets"][0]
        verdict = "passed" if gate.get("passed") else "FAILED"
        if gate.get("forced") and not gate.get("passed"):
            verdict += ", forced"
        auc_c, auc_p = first["candidate"]["roc_auc"], first["production"]["roc_auc"]
        recall = first["candidate"]["recall_high"]
        numbers = (
            f"ROC-AUC {auc_c:.3f} vs {auc_p:.3f}" if auc_c is not None and auc_p is not None else ""
        )
        if recall is not None:
            numbers += f", recall high+ {recall:.3f}"
        return f"{verdict} ({first['name']}: {numbers})" + (f"; {leak}" if leak else "")
