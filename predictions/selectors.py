"""Reads on predictions: what a user may see, filtered the way the history pages and API ask."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import django_filters
import numpy as np
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.utils import timezone
from django_filters.fields import IsoDateTimeField

from accounts.models import User
from floodsite.exceptions import ApplicationError
from mlcore.selectors import loaded_model_get
from predictions.models import BatchJob, Prediction, Source

VIEW_ALL_PERMISSION = "predictions.view_all_predictions"


def user_sees_everything(user: User) -> bool:
    """Auditors hold a permission; is_staff alone is not enough to read others' history."""
    return bool(user.has_perm(VIEW_ALL_PERMISSION))


def prediction_visible(*, user: User, what_if: bool = False) -> QuerySet[Prediction]:
    """Predictions ``user`` may read; what-if answers only when ``what_if`` asks for them."""
    manager = Prediction.all_sources if what_if else Prediction.objects
    qs = manager.select_related("model_version", "user", "site", "outcome__reported_by")
    return qs if user_sees_everything(user) else qs.filter(user=user)


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 date-time, turned into UTC; one the database cannot hold is a form error."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return result.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("Enter a date-time between years 1 and 9999.") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class PredictionFilter(django_filters.FilterSet):
    """Filters shared by the history page, its CSV export and GET /api/v1/predictions/."""

    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    risk_band = django_filters.CharFilter(field_name="risk_band")
    source = django_filters.ChoiceFilter(choices=Source.choices)
    model_version = django_filters.NumberFilter(
        field_name="model_version__version",
        help_text="Version number of the model.",
        min_value=1,
        max_value=2**31 - 1,
    )
    model_name = django_filters.CharFilter(field_name="model_version__name")
    site = django_filters.CharFilter(field_name="site__code", help_text="Site code.")
    user = django_filters.CharFilter(
        field_name="user__username", help_text="Username (auditors only)."
    )
    outcome_known = django_filters.TypedChoiceFilter(
        field_name="outcome",
        lookup_expr="isnull",
        exclude=True,
        choices=[("true", "true"), ("false", "false")],
        coerce=lambda value: value == "true",
    )

    class Meta:
        model = Prediction
        fields: list[str] = []


SORT_ORDERS = ("-created_at", "created_at", "-probability", "probability")


def prediction_list(
    *, user: User, filters: dict[str, Any] | None = None, order: str = "-created_at"
) -> QuerySet[Prediction]:
    """Predictions ``user`` may see, newest first; an invalid filter is a 400 naming it."""
    filters = dict(filters or {})
    if "user" in filters and not user_sees_everything(user):
        raise ApplicationError(
            "Only auditors can filter by user.",
            fields={"user": "auditors only"},
            code="forbidden",
            status_code=403,
        )
    # What-if answers are listed only when asked for by their source.
    what_if = filters.get("source") == Source.WHAT_IF
    filterset = PredictionFilter(filters, queryset=prediction_visible(user=user, what_if=what_if))
    if not filterset.is_valid():
        raise ApplicationError(
            "Some filters are invalid: " + ", ".join(sorted(filterset.errors)) + ".",
            fields={name: " ".join(errors) for name, errors in filterset.errors.items()},
        )
    if order not in SORT_ORDERS:
        raise ApplicationError(
            "Unknown sort order.", fields={"sort": f"one of {', '.join(SORT_ORDERS)}"}
        )
    return filterset.qs.order_by(order, "-id")


def _visible_one(queryset: QuerySet, object_id: Any) -> Any:
    """The object with this UUID in ``queryset``, or None (also for a malformed id)."""
    try:
        key = uuid.UUID(str(object_id))
    except ValueError:
        return None
    return queryset.filter(pk=key).first()


def prediction_get(*, user: User, prediction_id: Any) -> Prediction:
    """One prediction, or a 404 when it does not exist or belongs to someone else."""
    # A what-if answer's own page stays readable (the comparison links to it).
    prediction = _visible_one(prediction_visible(user=user, what_if=True), prediction_id)
    if prediction is None:
        raise ApplicationError("No such prediction.", code="not_found", status_code=404)
    return prediction


def prediction_explanation(*, prediction: Prediction) -> dict[str, Any]:
    """The row's exact explanation, ``{"baseline": log-odds, "factors": [...]}``, or {}.

    Stored when the prediction asked for one (the web form, the API with ``explain=1``).
    Otherwise (API calls without it, what-if answers, rows from before explanations added up)
    it is computed now, from the stored inputs, by the version that answered: the same
    numbers it would have stored. {} when that version cannot be loaded or has no explanation.
    """
    stored = prediction.explanation
    if isinstance(stored, dict) and stored.get("baseline") is not None:
        return stored
    try:
        loaded = loaded_model_get(model_version=prediction.model_version)
    except ApplicationError:
        return {}
    names = loaded.manifest.feature_names
    if not all(name in prediction.inputs for name in names):
        return {}
    values = np.array([float(prediction.inputs[name]) for name in names], dtype=np.float64)
    return loaded.predictor.predict_one(values).explanation_dict()


def prediction_band_counts(*, user: User, since: datetime) -> dict[str, int]:
    """How many predictions fell in each risk band since ``since``, for the dashboard."""
    rows = (
        prediction_visible(user=user)
        .filter(created_at__gte=since)
        .values("risk_band")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["risk_band"]: row["n"] for row in rows}


def batch_list(*, user: User) -> QuerySet[BatchJob]:
    qs = BatchJob.objects.select_related("model_version", "owner")
    return qs if user_sees_everything(user) else qs.filter(owner=user)


def batch_get(*, user: User, job_id: Any) -> BatchJob:
    """One job, or a 404 when it does not exist or belongs to someone else."""
    job = _visible_one(batch_list(user=user), job_id)
    if job is None:
        raise ApplicationError("No such batch job.", code="not_found", status_code=404)
    return job


def batch_file_get(*, job: BatchJob, kind: str) -> Any:
    """The finished job's results or errors file; 404 for another kind, 409 while running."""
    if kind not in ("results", "errors"):
        raise ApplicationError("No such file.", code="not_found", status_code=404)
    stored = job.result_file if kind == "results" else job.error_file
    if not job.finished or not stored:
        raise ApplicationError("The job has not finished yet.", code="not_ready", status_code=409)
    return stored


def batch_file_name(*, job: BatchJob, kind: str) -> str:
    stem = job.original_name.rsplit(".", 1)[0][:100] or "batch"
    return f"{stem}-{kind}.csv"


@dataclass(frozen=True)
class BatchProgress:
    percent: float
    rows_per_second: float | None
    eta_seconds: float | None


def batch_progress(*, job: BatchJob) -> BatchProgress:
    """How far a job is, how fast it goes, and when it should finish at that pace."""
    total = job.total_rows or 0
    done = job.processed_rows
    percent = 100.0 if job.finished and total == done else (100.0 * done / total if total else 0.0)
    rate = None
    eta = None
    if job.started_at and done:
        end = job.finished_at or job.progress_at or timezone.now()
        elapsed = max((end - job.started_at).total_seconds(), 1e-3)
        rate = done / elapsed
        if not job.finished and total:
            eta = max(total - done, 0) / rate
    return BatchProgress(percent=round(percent, 1), rows_per_second=rate, eta_seconds=eta)
