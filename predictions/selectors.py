"""Reads on predictions: what a user may see, filtered the way the history pages and API ask."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import django_filters
import numpy as np
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.utils import timezone
from django_filters.fields import IsoDateTimeField

from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion
from mlcore.selectors import loaded_model_get
from predictions.models import BatchJob, Prediction, Source

VIEW_ALL_PERMISSION = "predictions.view_all_predictions"


def user_sees_everything(user: Any) -> bool:
    """Auditors hold a permission; is_staff alone is not enough to read others' history."""
    return bool(user.has_perm(VIEW_ALL_PERMISSION))


def prediction_visible(*, user: Any, what_if: bool = False) -> QuerySet[Prediction]:
    """Predictions ``user`` may read; what-if answers only when ``what_if`` asks for them."""
    manager = Prediction.all_sources if what_if else Prediction.objects
    qs = manager.select_related("model_version", "user", "outcome__reported_by")
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
    *, user: Any, filters: dict[str, Any] | None = None, order: str = "-created_at"
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


def prediction_get(*, user: Any, prediction_id: Any) -> Prediction:
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


def prediction_band_counts(*, user: Any, since: datetime) -> dict[str, int]:
    """How many predictions fell in each risk band since ``since``, for the dashboard."""
    rows = (
        prediction_visible(user=user)
        .filter(created_at__gte=since)
        .values("risk_band")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["risk_band"]: row["n"] for row in rows}


def batch_list(*, user: Any) -> QuerySet[BatchJob]:
    qs = BatchJob.objects.select_related("model_version", "owner")
    return qs if user_sees_everything(user) else qs.filter(owner=user)


def batch_get(*, user: Any, job_id: Any) -> BatchJob:
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


# --- shadow comparison ------------------------------------------------------------------------

COMPARISON_MAX_ROWS = 50_000  # newest rows of the window; enough for stable percentages
POSITIVE_AT = 0.5  # the Predictor labels a row with the positive class from P = 0.5


@dataclass(frozen=True)
class ShadowComparison:
    """How a shadow version's answers compare with the answers users were given."""

    shadow: ModelVersion
    baseline: ModelVersion | None
    since: datetime
    until: datetime
    rows: int  # rows where both answered
    errors: int  # rows where the shadow gave no answer
    truncated: bool
    answered_by: list[tuple[str, int]]
    band_agreement: float | None = None  # percent
    label_agreement: float | None = None
    diff_mean: float | None = None
    diff_median: float | None = None
    diff_p95: float | None = None
    diff_max: float | None = None
    bands: list[str] = field(default_factory=list)
    confusion: list[dict[str, Any]] = field(default_factory=list)
    outcomes: int = 0
    production_right: int = 0
    shadow_right: int = 0
    both_right: int = 0
    neither_right: int = 0

    def percent_of_outcomes(self, count: int) -> float | None:
        return 100 * count / self.outcomes if self.outcomes else None

    @property
    def production_right_percent(self) -> float | None:
        return self.percent_of_outcomes(self.production_right)

    @property
    def shadow_right_percent(self) -> float | None:
        return self.percent_of_outcomes(self.shadow_right)

    @property
    def only_production_right(self) -> int:
        return self.production_right - self.both_right

    @property
    def only_shadow_right(self) -> int:
        return self.shadow_right - self.both_right


def shadow_comparison_get(
    *,
    shadow: ModelVersion,
    since: datetime,
    until: datetime,
    baseline: ModelVersion | None = None,
) -> ShadowComparison:
    """Compare ``shadow``'s stored answers with the answering model's over [since, until).

    ``baseline`` keeps only rows answered by that version (any pair); without it every row the
    shadow scored counts, whichever version answered. Labels are compared at P >= 0.5, and
    with outcomes each model is right when its label matches what was observed.
    """
    rows = Prediction.objects.filter(
        shadow_model_version=shadow, created_at__gte=since, created_at__lt=until
    )
    if baseline is not None:
        rows = rows.filter(model_version=baseline)
    fetched = list(
        rows.order_by("-created_at").values_list(
            "model_version_id",
            "probability",
            "risk_band",
            "shadow_probability",
            "shadow_risk_band",
            "outcome__flooded",
        )[: COMPARISON_MAX_ROWS + 1]
    )
    truncated = len(fetched) > COMPARISON_MAX_ROWS
    fetched = fetched[:COMPARISON_MAX_ROWS]
    answered = [row for row in fetched if row[3] is not None]
    counts: dict[int, int] = {}
    for row in fetched:
        counts[row[0]] = counts.get(row[0], 0) + 1
    labels = dict(ModelVersion.objects.filter(pk__in=counts).values_list("pk", "version"))
    base = ShadowComparison(
        shadow=shadow,
        baseline=baseline,
        since=since,
        until=until,
        rows=len(answered),
        errors=len(fetched) - len(answered),
        truncated=truncated,
        answered_by=sorted(
            ((f"v{labels.get(pk, '?')}", n) for pk, n in counts.items()), key=lambda x: -x[1]
        ),
    )
    if not answered:
        return base

    live_p = np.array([row[1] for row in answered], dtype=np.float64)
    shadow_p = np.array([row[3] for row in answered], dtype=np.float64)
    live_band = [row[2] for row in answered]
    shadow_band = [row[4] for row in answered]
    diff = np.abs(live_p - shadow_p)
    live_positive = live_p >= POSITIVE_AT
    shadow_positive = shadow_p >= POSITIVE_AT

    band_order = [band["name"] for band in shadow.manifest.get("risk_bands", [])]
    band_order += sorted(set(live_band + shadow_band) - set(band_order))
    index = {name: i for i, name in enumerate(band_order)}
    table = np.zeros((len(band_order), len(band_order)), dtype=np.int64)
    for live, other in zip(live_band, shadow_band, strict=True):
        table[index[live], index[other]] += 1

    observed = [(i, row[5]) for i, row in enumerate(answered) if row[5] is not None]
    live_right = [bool(live_positive[i]) == flooded for i, flooded in observed]
    shadow_right = [bool(shadow_positive[i]) == flooded for i, flooded in observed]
    return replace(
        base,
        band_agreement=100
        * float(np.mean([a == b for a, b in zip(live_band, shadow_band, strict=True)])),
        label_agreement=100 * float(np.mean(live_positive == shadow_positive)),
        diff_mean=float(diff.mean()),
        diff_median=float(np.median(diff)),
        diff_p95=float(np.percentile(diff, 95)),
        diff_max=float(diff.max()),
        bands=band_order,
        confusion=[
            {"band": name, "counts": [int(n) for n in table[i]], "total": int(table[i].sum())}
            for i, name in enumerate(band_order)
        ],
        outcomes=len(observed),
        production_right=sum(live_right),
        shadow_right=sum(shadow_right),
        both_right=sum(a and b for a, b in zip(live_right, shadow_right, strict=True)),
        neither_right=sum(not a and not b for a, b in zip(live_right, shadow_right, strict=True)),
    )
