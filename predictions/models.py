"""The register of sites, the audit log of every prediction, outcomes, idempotency, batches."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from mlcore.models import ModelVersion


class Source(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    BATCH = "batch", "Batch"
    # A what-if comparison on the result page: kept as an audit trail of what was asked, but
    # exploration, never a prediction (see EXPLORATION_SOURCES).
    WHAT_IF = "what_if", "What-if"


# Answers given while exploring. ``Prediction.objects`` never returns them, so history, exports,
# monitoring, drift, accuracy, the promotion gate and retraining cannot count them by mistake.
EXPLORATION_SOURCES = (Source.WHAT_IF,)


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit row."""


class PredictionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Predictions are an append-only audit log; they are never updated.")

    def delete(self):
        raise AppendOnlyError("Predictions are an append-only audit log; they are never deleted.")


class RealPredictionManager(models.Manager["Prediction"]):
    """The default manager: real predictions only, so every reader leaves exploration out."""

    def get_queryset(self) -> models.QuerySet[Prediction]:
        # A PredictionQuerySet, so updates and deletes are refused here too.
        return PredictionQuerySet(self.model, using=self._db).exclude(
            source__in=EXPLORATION_SOURCES
        )


SITE_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SITE_CODE_RULE = (
    "1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit"
)


class Site(models.Model):
    """A place watched over time (a gauge, a village, a catchment), shared by every user.

    ``features`` holds the site's values of the production model's place features (those its
    feature metadata marks ``scope: place``), keyed by feature name; a prediction for the site
    starts from them and the analyst enters the moment's values. A prediction never changes
    the register: values typed over the site's are kept on its audit row only.
    """

    code = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(SITE_CODE_PATTERN, message=f"Use {SITE_CODE_RULE}.")],
        help_text=f"Unique; {SITE_CODE_RULE}.",
    )
    name = models.CharField(max_length=200)
    latitude = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
        help_text="Decimal degrees, -90 to 90 (WGS 84).",
    )
    longitude = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-180), MaxValueValidator(180)],
        help_text="Decimal degrees, -180 to 180 (WGS 84).",
    )
    notes = models.TextField(blank=True, max_length=2000)
    features = models.JSONField(
        default=dict, blank=True, help_text="Place-feature values by feature name."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        indexes = [models.Index(fields=["name", "code"], name="site_name_code")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(latitude__isnull=True)
                | models.Q(latitude__gte=-90, latitude__lte=90),
                name="site_latitude_range",
            ),
            models.CheckConstraint(
                condition=models.Q(longitude__isnull=True)
                | models.Q(longitude__gte=-180, longitude__lte=180),
                name="site_longitude_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class Prediction(models.Model):
    """One answered prediction: what was asked, which model answered, what it said, how fast.

    Written in the same transaction that produces the response, so nothing is ever returned
    without its audit row. Rows are never updated or deleted; ground truth goes in Outcome.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # The composite indexes in Meta lead with these columns; single-column indexes on the
    # foreign keys would only slow down every insert (batches write millions of rows).
    #
    # No foreign-key constraints in the database (db_constraint=False): PostgreSQL checks each
    # one with a trigger per inserted row, a large share of a batch chunk's time (see the batch
    # section of docs/benchmarks.md). The references hold by construction instead:
    # rows are only written by predictions.services and predictions.batches with the user,
    # model version and job they have just read, and PROTECT (enforced by Django) refuses to
    # delete a user, model version or job that has predictions.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="predictions",
        db_index=False,
        db_constraint=False,
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        related_name="predictions",
        db_index=False,
        db_constraint=False,
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
    batch = models.ForeignKey(
        "BatchJob",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="predictions",
        db_index=False,  # covered by the (batch, batch_row) unique index
        db_constraint=False,
    )
    batch_row = models.PositiveIntegerField(
        null=True, blank=True, help_text="Row number in the uploaded file (1 = first data row)."
    )
    # What the shadow version (if one was set) said for the same inputs; never returned.
    shadow_model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shadow_predictions",
        db_index=False,  # covered by prediction_shadow_created
        db_constraint=False,
    )
    shadow_probability = models.FloatField(null=True, blank=True)
    shadow_risk_band = models.CharField(max_length=30, blank=True)
    shadow_error = models.CharField(
        max_length=300, blank=True, help_text="Why the shadow version gave no answer."
    )
    # The place asked about, when one was named (web form, API "site", a batch's site column).
    site = models.ForeignKey(
        Site,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="predictions",
        db_index=False,  # covered by prediction_site_created
        db_constraint=False,
    )
    # Values that came with the question but are not model inputs (a batch file's extra
    # columns, the API's "context"): returned beside the answer, never scored.
    context = models.JSONField(null=True, blank=True)

    # The first manager is the default one (admin forms, related lookups by default, every
    # ``Prediction.objects`` reader); the whole audit trail is asked for by name.
    objects = RealPredictionManager()
    all_sources = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("view_all_predictions", "Can view and export every user's predictions")]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="prediction_user_created"),
            models.Index(fields=["-created_at"], name="prediction_created"),
            models.Index(fields=["risk_band", "-created_at"], name="prediction_band_created"),
            models.Index(fields=["source", "-created_at"], name="prediction_source_created"),
            models.Index(fields=["model_version", "-created_at"], name="prediction_model_created"),
            models.Index(
                fields=["shadow_model_version", "-created_at"],
                name="prediction_shadow_created",
                condition=models.Q(shadow_model_version__isnull=False),
            ),
            # A site's newest answer (the map, the top-risk table) is read from this index
            # alone on PostgreSQL: the columns it shows ride along (INCLUDE); other databases
            # build the plain index.
            models.Index(
                fields=["site", "-created_at"],
                name="prediction_site_created",
                condition=models.Q(site__isnull=False),
                include=["source", "probability", "risk_band"],
            ),
        ]
        constraints = [
            # A re-run batch chunk can never log a row twice.
            models.UniqueConstraint(
                fields=["batch", "batch_row"],
                condition=models.Q(batch__isnull=False),
                name="prediction_batch_row_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.risk_band} ({self.probability:.3f})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(
                "Predictions are an append-only audit log; they are never updated."
            )
        if args or set(kwargs) - {"force_insert", "using"}:
            raise TypeError("A new audit row takes only force_insert and using.")
        # Imported here: the writer imports this module. Every audit row is written there.
        from predictions.audit_writer import audit_row_insert

        audit_row_insert(self, using=kwargs.get("using") or "default")

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
        # add_outcome covers your own predictions; outcomes feed the promotion gate and
        # retraining, so recording one on another user's prediction is a permission apart.
        permissions = [("add_outcome_any", "Can record outcomes on any user's prediction")]

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


class BatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partially succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (
    BatchStatus.SUCCEEDED,
    BatchStatus.PARTIAL,
    BatchStatus.FAILED,
    BatchStatus.CANCELLED,
)


def _batch_path(instance: BatchJob, filename: str) -> str:
    return f"batches/{instance.pk}/{filename}"


class BatchJob(models.Model):
    """A CSV scored as a whole: every valid row becomes an audit row, every bad row an error.

    The model version is fixed at submission, so a promotion during a long job does not mix
    two models in one result file.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="batch_jobs"
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    input_file = models.FileField(upload_to=_batch_path, max_length=300)
    original_name = models.CharField(max_length=255)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="batch_jobs"
    )
    status = models.CharField(
        max_length=10, choices=BatchStatus.choices, default=BatchStatus.QUEUED
    )
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    processed_rows = models.PositiveIntegerField(default=0)
    failed_rows = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    result_file = models.FileField(upload_to=_batch_path, max_length=300, blank=True)
    error_file = models.FileField(upload_to=_batch_path, max_length=300, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    passthrough_columns = models.JSONField(
        default=list,
        blank=True,
        help_text="The file's columns that are not model inputs, in their order; returned "
        "beside each answer in results.csv and errors.csv.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(
        null=True, blank=True, help_text="When a chunk last finished; stalled jobs are resumed."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    notified = models.BooleanField(
        default=False, help_text="The owner has seen the finished notice."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="batch_owner_created"),
            models.Index(fields=["status"], name="batch_status"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="batch_owner_idempotency_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.get_status_display()})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class BatchChunk(models.Model):
    """One slice of a job's rows, scored by one Celery task; done once, whatever retries."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_row = models.PositiveIntegerField()
    row_count = models.PositiveIntegerField()
    done = models.BooleanField(default=False)
    rows_ok = models.PositiveIntegerField(default=0)
    rows_failed = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Renewed by the task scoring the chunk after every block of rows; while it lies in the
    # future the task is alive and nothing queues the chunk again.
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="batch_chunk_unique")]

    def __str__(self) -> str:
        return f"{self.job_id} chunk {self.index}"


class BatchRowError(models.Model):
    """Why one row of an uploaded file was not scored."""

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.PositiveIntegerField()
    column = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=255)
    # The row's pass-through cells (BatchJob.passthrough_columns), for errors.csv.
    passthrough = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["job", "row_number", "id"]
        indexes = [models.Index(fields=["job", "row_number"], name="batch_error_row")]

    def __str__(self) -> str:
        return f"row {self.row_number} {self.column}: {self.reason}"
