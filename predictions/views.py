"""Pages of the predictions app: dashboard, predict, result with what-if, history, export."""

from __future__ import annotations

import csv
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.http import AuthenticatedHttpRequest
from accounts.models import User
from accounts.permissions import check_owner_or_permission, permissions_required
from accounts.roles import (
    CANCEL_ANY_BATCH,
    PREDICT,
    RECORD_OUTCOME,
    RECORD_OUTCOME_ANY,
    VIEW_PREDICTIONS,
    VIEW_SITES,
)
from floodsite.exceptions import ApplicationError
from floodsite.rest import client_ip
from mlcore.engine.explanation import log_odds, sigmoid
from mlcore.engine.schema import Manifest
from mlcore.selectors import LoadedModel, model_version_get_production, predictor_get_active
from predictions.batches import batch_cancel, batch_create, batch_mark_notified
from predictions.exports import prediction_csv_lines
from predictions.forms import (
    BatchUploadForm,
    HistoryFilterForm,
    OutcomeForm,
    PredictionForm,
    WhatIfForm,
    feature_label,
)
from predictions.models import BatchJob, Prediction, Source
from predictions.selectors import (
    batch_file_get,
    batch_file_name,
    batch_get,
    batch_list,
    batch_progress,
    prediction_band_counts,
    prediction_explanation,
    prediction_get,
    prediction_list,
    user_sees_everything,
)
from predictions.services import (
    idempotent_call,
    outcome_create,
    prediction_create,
    request_fingerprint,
    what_if_create,
)
from predictions.site_risk import sites_top_risk
from predictions.sites import site_for_code, site_place_values

HISTORY_PAGE_SIZE = 25
# Factors drawn one per line on the result page; the rest share one line.
SHOWN_FACTORS = 5


def _no_model_page(request: AuthenticatedHttpRequest, exc: ApplicationError) -> HttpResponse:
    return render(request, "predictions/no_model.html", {"message": exc.message}, status=503)


def _band_rows(manifest: Manifest, counts: dict[str, int]) -> list[dict[str, Any]]:
    """Bands in order with their count and bar length (share of the largest), for charts."""
    largest = max(counts.values(), default=0) or 1
    return [
        {
            "name": band.name,
            "colour": band.colour,
            "meaning": band.meaning,
            "count": counts.get(band.name, 0),
            "percent": round(100 * counts.get(band.name, 0) / largest, 1),
        }
        for band in manifest.risk_bands
    ]


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Start page: this week's predictions by band, the latest ones, the model answering."""
    try:
        model_version = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
        manifest = Manifest.from_dict(model_version.manifest)
        problem = ""
    except ApplicationError as exc:
        model_version, manifest, problem = None, None, exc.message
    # Signed in without a role (or without this permission): the page says whom to ask.
    can_read = request.user.has_perm(VIEW_PREDICTIONS)
    week_ago = timezone.now() - timedelta(days=7)
    counts = prediction_band_counts(user=request.user, since=week_ago) if can_read else {}
    context = {
        "model_version": model_version,
        "model_problem": problem,
        "bands": _band_rows(manifest, counts) if manifest else [],
        "week_total": sum(counts.values()),
        "recent": prediction_list(user=request.user)[:5] if can_read else [],
        "sees_everything": user_sees_everything(request.user),
        "no_role": not can_read,
        "top_sites": sites_top_risk() if request.user.has_perm(VIEW_SITES) else None,
    }
    return render(request, "predictions/home.html", context)


def _active() -> LoadedModel:
    return predictor_get_active(name=settings.FLOODSITE_MODEL_NAME)


@login_required
@require_http_methods(["GET", "POST"])
@permissions_required(PREDICT)
def predict(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The form generated from the production model; a valid submit shows the result page."""
    try:
        loaded = _active()
    except ApplicationError as exc:
        return _no_model_page(request, exc)
    options_url = reverse("site_options") if request.user.has_perm(VIEW_SITES) else ""
    place, initial = None, {}
    asked = request.GET.get("site", "").strip() if request.method == "GET" else ""
    if asked:
        # "Predict for this site" from the register: the form opens with its values.
        try:
            site = site_for_code(asked)
        except ApplicationError:
            pass  # the field then shows the code, and a submit names the problem
        else:
            place = site_place_values(site, loaded.manifest)
        initial["site"] = asked
    form = PredictionForm(
        request.POST or None,
        manifest=loaded.manifest,
        place=place,
        options_url=options_url,
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        inputs = form.inputs()
        site_code = form.site_code()
        try:
            # The hidden submission id makes a double click or a resent form land on the
            # first result instead of logging the same question twice.
            _, body, _ = idempotent_call(
                user=request.user,
                key=f"web-predict-{form.cleaned_data['submission']}",
                fingerprint=lambda: request_fingerprint(
                    method="POST", path=request.path, body={"inputs": inputs, "site": site_code}
                ),
                perform=lambda: (
                    201,
                    {
                        "id": str(
                            prediction_create(
                                user=request.user,
                                source=Source.WEB,
                                inputs=inputs,
                                site_code=site_code,
                                request_id=getattr(request, "request_id", ""),
                                client_ip=client_ip(request),
                                explain=True,
                            ).id
                        )
                    },
                ),
            )
        except ApplicationError as exc:
            if exc.status_code == 503:
                return _no_model_page(request, exc)
            form.add_service_errors(exc.fields or {"__all__": exc.message})
        else:
            return redirect("prediction_detail", prediction_id=body["id"])
    status = 400 if request.method == "POST" else 200
    return render(
        request, "predictions/predict.html", {"form": form, "model": loaded}, status=status
    )


def _result_context(prediction: Prediction) -> dict[str, Any]:
    manifest = Manifest.from_dict(prediction.model_version.manifest)
    band = next((b for b in manifest.risk_bands if b.name == prediction.risk_band), None)
    specs = {spec.name: spec for spec in manifest.features}
    explanation = prediction_explanation(prediction=prediction)
    shown = explanation.get("factors", [])
    largest = max((abs(f["points"]) for f in shown), default=0) or 1
    factors = [
        {
            **factor,
            "label": feature_label(specs[factor["feature"]])
            if factor["feature"] in specs
            else factor["feature"],
            "unit": specs[factor["feature"]].unit if factor["feature"] in specs else "",
            "percent": round(100 * abs(factor["points"]) / largest, 1),
            "points": round(100 * factor["points"], 1),
        }
        for factor in shown[:SHOWN_FACTORS]
    ]
    # The smaller factors together, so the lines on the page add up to the answer.
    rest = shown[SHOWN_FACTORS:]
    rest_points = sum(factor["points"] for factor in rest)
    baseline = explanation.get("baseline")
    calibration = explanation.get("calibration")
    calibration_points = None
    if calibration is not None:
        # From the model's probability (where the factors end) to the answer.
        before = float(sigmoid(log_odds(prediction.probability) - calibration))
        calibration_points = round(100 * (prediction.probability - before), 1)
    inputs = [
        {
            "name": spec.name,
            "label": feature_label(spec),
            "value": prediction.inputs.get(spec.name),
            "unit": spec.unit,
            "out_of_range": spec.name in prediction.out_of_range,
            "range": f"{spec.minimum:g} to {spec.maximum:g}",
        }
        for spec in manifest.features
    ]
    return {
        "prediction": prediction,
        "percent": round(100 * prediction.probability, 1),
        "band": band,
        "factors": factors,
        "other_factors": len(rest),
        "other_points": round(100 * rest_points, 1),
        "other_direction": "raises" if rest_points > 0 else "lowers",
        "baseline_log_odds": baseline,
        "calibration_points": calibration_points,
        "baseline_percent": None
        if baseline is None
        else round(100 * explanation["baseline_probability"], 1),
        "inputs": inputs,
        "manifest": manifest,
    }


@login_required
@permissions_required(VIEW_PREDICTIONS)
def prediction_detail(request: AuthenticatedHttpRequest, prediction_id: str) -> HttpResponse:
    """The result: probability, band and its meaning, what drove it, what-if, the outcome."""
    prediction = prediction_get(user=request.user, prediction_id=prediction_id)
    context = _result_context(prediction)
    context["what_if"] = WhatIfForm(manifest=context["manifest"])
    context["outcome_form"] = OutcomeForm()
    context["may_record_outcome"] = _may_record_outcome(request.user, prediction)
    return render(request, "predictions/detail.html", context)


def _may_record_outcome(user: User, prediction: Prediction) -> bool:
    """Whether the page offers the outcome form (predictions.services.outcome_create decides)."""
    if not user.has_perm(RECORD_OUTCOME):
        return False
    return prediction.user_id == user.pk or user.has_perm(RECORD_OUTCOME_ANY)


@login_required
@require_POST
@permissions_required(VIEW_PREDICTIONS, PREDICT)
def prediction_what_if(request: AuthenticatedHttpRequest, prediction_id: str) -> HttpResponse:
    """htmx: score the same inputs with one or two changed and show both side by side."""
    original = prediction_get(user=request.user, prediction_id=prediction_id)
    manifest = Manifest.from_dict(original.model_version.manifest)
    form = WhatIfForm(request.POST, manifest=manifest)
    context: dict[str, Any] = {"original": original, "what_if": form}
    status = 200
    if form.is_valid():
        try:
            changed = what_if_create(
                user=request.user,
                original=original,
                changes=form.changes(),
                request_id=getattr(request, "request_id", ""),
                client_ip=client_ip(request),
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            status = exc.status_code
        else:
            context.update(
                changed=changed,
                changes=form.changes(),
                delta=round(100 * (changed.probability - original.probability), 1),
                delta_abs=round(abs(100 * (changed.probability - original.probability)), 1),
            )
    else:
        status = 400
    template = "predictions/_what_if.html" if request.htmx else "predictions/what_if_page.html"
    return render(request, template, context, status=200 if request.htmx else status)


@login_required
@require_POST
@permissions_required(VIEW_PREDICTIONS, RECORD_OUTCOME)
def prediction_outcome(request: AuthenticatedHttpRequest, prediction_id: str) -> HttpResponse:
    """Record what was observed; on a bad form the result page shows what to fix."""
    prediction = prediction_get(user=request.user, prediction_id=prediction_id)
    # Checked before the form, so that it is the 403 page rather than a form error.
    check_owner_or_permission(
        request.user, owner_id=prediction.user_id, permission=RECORD_OUTCOME_ANY
    )
    form = OutcomeForm(request.POST)
    if form.is_valid():
        try:
            outcome_create(
                prediction=prediction,
                user=request.user,
                flooded=form.cleaned_data["flooded"],
                observed_at=form.cleaned_data["observed_at"],
                note=form.cleaned_data["note"],
            )
        except ApplicationError as exc:
            for name, reason in exc.fields.items():
                if name in form.fields:
                    form.add_error(name, reason)
            if not form.errors:
                form.add_error(None, exc.message)
        else:
            return redirect("prediction_detail", prediction_id=prediction.pk)
    context = _result_context(prediction)
    context["what_if"] = WhatIfForm(manifest=context["manifest"])
    context["outcome_form"] = form
    context["may_record_outcome"] = True
    return render(request, "predictions/detail.html", context, status=400)


def _history_form(request: AuthenticatedHttpRequest) -> tuple[HistoryFilterForm, list[str]]:
    try:
        manifest = Manifest.from_dict(
            model_version_get_production(name=settings.FLOODSITE_MODEL_NAME).manifest
        )
        bands, features = [b.name for b in manifest.risk_bands], manifest.feature_names
    except ApplicationError:
        bands, features = ["low", "moderate", "high", "severe"], []
    form = HistoryFilterForm(
        request.GET or None, bands=bands, can_filter_users=user_sees_everything(request.user)
    )
    return form, features


def _filtered(request: AuthenticatedHttpRequest, form: HistoryFilterForm):
    if form.is_bound and not form.is_valid():
        return None
    filters = form.selector_filters() if form.is_bound else {}
    order = (form.cleaned_data.get("sort") if form.is_bound else "") or "-created_at"
    return prediction_list(user=request.user, filters=filters, order=order)


@login_required
@permissions_required(VIEW_PREDICTIONS)
def history(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Everything the user asked (everyone's for auditors), filtered, sorted and paged."""
    form, _ = _history_form(request)
    try:
        queryset = _filtered(request, form)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        queryset = None
    page = None
    if queryset is not None:
        page = Paginator(queryset, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "sees_everything": user_sees_everything(request.user),
    }
    return render(request, "predictions/history.html", context, status=200 if page else 400)


@login_required
@permissions_required(VIEW_PREDICTIONS)
def history_export(request: AuthenticatedHttpRequest) -> HttpResponseBase:
    """The filtered history as CSV, streamed, with spreadsheet-formula cells neutralised."""
    form, features = _history_form(request)
    try:
        queryset = _filtered(request, form)
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        queryset = None
    if queryset is None:
        return render(
            request,
            "predictions/history.html",
            {"form": form, "page": None, "query": ""},
            status=400,
        )
    if not features:
        seen = queryset.first()
        features = list(seen.inputs) if seen else []
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        prediction_csv_lines(queryset.iterator(chunk_size=2000), features=features),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="floodsite-predictions-{stamp}.csv"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
@permissions_required(VIEW_PREDICTIONS, unsafe=[PREDICT])
def batch_upload(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Upload a CSV to score every row; lists the user's jobs."""
    form = BatchUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                job = batch_create(
                    owner=request.user, source=Source.WEB, upload=form.cleaned_data["file"]
                )
            except ApplicationError as exc:
                form.add_error("file", exc.message)
                status = exc.status_code
            else:
                return redirect("batch_detail", job_id=job.pk)
        else:
            status = 400
    try:
        features = _active().manifest.feature_names
    except ApplicationError:
        features = []
    context = {
        "form": form,
        "jobs": batch_list(user=request.user)[:50],
        "features": features,
        "context_max_keys": settings.CONTEXT_MAX_KEYS,
    }
    return render(request, "predictions/batches.html", context, status=status)


@login_required
@permissions_required(VIEW_PREDICTIONS)
def batch_template(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A CSV for the production model: its input columns and one row of typical values."""
    try:
        manifest = _active().manifest
    except ApplicationError as exc:
        return _no_model_page(request, exc)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    writer = csv.writer(response, lineterminator="\n")
    writer.writerow(manifest.feature_names)
    writer.writerow([f"{spec.default:g}" for spec in manifest.features])
    name = f"{manifest.name}-template.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _batch_context(job: BatchJob) -> dict[str, Any]:
    return {"job": job, "progress": batch_progress(job=job)}


@login_required
@permissions_required(VIEW_PREDICTIONS)
def batch_detail(request: AuthenticatedHttpRequest, job_id: str) -> HttpResponse:
    job = batch_get(user=request.user, job_id=job_id)
    if job.finished and job.owner_id == request.user.pk and not job.notified:
        batch_mark_notified(job=job)
    return render(request, "predictions/batch_detail.html", _batch_context(job))


@login_required
@permissions_required(VIEW_PREDICTIONS)
def batch_progress_fragment(request: AuthenticatedHttpRequest, job_id: str) -> HttpResponse:
    """htmx polls this while the job runs; a finished job's fragment stops the polling."""
    job = batch_get(user=request.user, job_id=job_id)
    return render(request, "predictions/_batch_progress.html", _batch_context(job))


@login_required
@require_POST
@permissions_required(VIEW_PREDICTIONS, PREDICT)
def batch_cancel_view(request: AuthenticatedHttpRequest, job_id: str) -> HttpResponse:
    job = batch_get(user=request.user, job_id=job_id)
    check_owner_or_permission(request.user, owner_id=job.owner_id, permission=CANCEL_ANY_BATCH)
    try:
        batch_cancel(job=job)
    except ApplicationError as exc:
        return render(request, "400.html", {"message": exc.message}, status=exc.status_code)
    return redirect("batch_detail", job_id=job.pk)


@login_required
@permissions_required(VIEW_PREDICTIONS)
def batch_download(request: AuthenticatedHttpRequest, job_id: str, kind: str) -> FileResponse:
    job = batch_get(user=request.user, job_id=job_id)
    stored = batch_file_get(job=job, kind=kind)
    return FileResponse(
        stored.open("rb"),
        as_attachment=True,
        filename=batch_file_name(job=job, kind=kind),
        content_type="text/csv",
    )
