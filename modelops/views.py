"""Model-operations pages: the monitoring dashboard, its SVG charts, alert actions, and a
version's shadow comparison.

A chart is drawn by ``modelops.charts`` and served as ``image/svg+xml`` from its own URL,
cached for MONITOR_CHART_CACHE_SECONDS. matplotlib's SVG carries style attributes, which the
pages' CSP forbids, so a chart is an ``<img>`` (which never runs script) and its response gets
its own CSP: inline styles, nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from csp.decorators import csp
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.http import AuthenticatedHttpRequest, View
from accounts.permissions import check_permissions, permissions_required
from accounts.roles import (
    HANDLE_ALERTS,
    RUN_CHECKS,
    VIEW_ALL_PREDICTIONS,
    VIEW_MODELS,
    VIEW_MONITORING,
)
from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion
from mlcore.selectors import model_version_get
from modelops import charts, selectors, services
from modelops.charts import DEFAULT_PERIOD, PERIODS, Period
from modelops.models import AlertKind
from modelops.shadow import shadow_comparison_get

# Drift of a version other than the one the checks measured is computed while the page loads.
FOCUS_DRIFT_ROWS = 10_000
# A chart's SVG may style itself but load, frame or run nothing.
CHART_CSP = {
    "default-src": ["'none'"],
    "style-src": ["'unsafe-inline'"],
    "frame-ancestors": ["'self'"],
}


def chart_csp(view: View) -> View:
    """``csp(CHART_CSP)``, typed as Django types its own view decorators (django-csp's types
    take views of the request alone, so views with URL arguments would not match)."""
    return csp(CHART_CSP)(view)  # type: ignore[return-value]


# --- input ----------------------------------------------------------------------------------


def _require_monitor(request: AuthenticatedHttpRequest) -> None:
    # Auditors and admins hold it (accounts.roles); the 403 names it.
    check_permissions(request.user, [VIEW_MONITORING])


def _period(value: str | None) -> Period:
    key = DEFAULT_PERIOD if value in (None, "") else value
    if key not in PERIODS:
        choices = ", ".join(PERIODS)
        raise ApplicationError(
            f"The window parameter must be one of {choices} (got {str(key)[:20]!r}).",
            fields={"window": f"choose one of {choices}"},
        )
    return PERIODS[key]


def _span(period: Period) -> tuple[datetime, datetime]:
    until = timezone.now()
    return until - period.span, until


def _dashboard_url(period: Period) -> str:
    url = reverse("monitoring")
    return url if period.key == DEFAULT_PERIOD else f"{url}?window={period.key}"


# --- the page -------------------------------------------------------------------------------


def _drift_rows(block: dict[str, Any], series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if block.get("status") != "ok":
        return []
    threshold = settings.MONITOR_PSI_THRESHOLD
    entries = dict(block.get("features") or {})
    probability = block.get("probability") or {}
    if probability:
        entries[selectors.PROBABILITY_SUBJECT] = probability
    alerting = {alert.subject for alert in selectors.alert_list_active() if alert.kind == "drift"}
    rows = []
    for subject, entry in entries.items():
        psi_value = entry.get("psi")
        if psi_value is None:
            verdict = entry.get("reason") or "not measured"
        elif psi_value > threshold:
            verdict = f"above the threshold {threshold}"
        else:
            verdict = f"within the threshold {threshold}"
        rows.append(
            {
                "subject": subject,
                "psi": psi_value,
                "ks": entry.get("ks"),
                "outside": entry.get("outside"),
                "level": entry.get("level") or "unknown",
                "mean": entry.get("mean"),
                "reference_mean": entry.get("reference_mean"),
                "above": psi_value is not None and psi_value > threshold,
                "verdict": verdict,
                "note": entry.get("note"),
                "alert": subject in alerting,
                "history": sum(1 for point in series if point["psi"].get(subject) is not None),
            }
        )
    return rows


def _focus(request: AuthenticatedHttpRequest) -> ModelVersion | None:
    """The model version named by ?model=&version= (links from a version's page), if any."""
    name, number = request.GET.get("model", ""), request.GET.get("version", "")
    if not name and not number:
        return None
    if not name or not number:
        missing = "model" if not name else "version"
        raise ApplicationError(
            "Give both the model and the version parameters, or neither.",
            fields={missing: "required with the other"},
        )
    try:
        version = int(number)
    except ValueError:
        raise ApplicationError(
            f"The version parameter must be a whole number (got {number[:20]!r}).",
            fields={"version": "must be a whole number"},
        ) from None
    return model_version_get(name=name[:200], version=version)


def _accuracy_rows(
    since: datetime, until: datetime, focus: ModelVersion | None
) -> list[dict[str, Any]]:
    if focus is None:
        blocks = selectors.model_accuracy_list(since=since, until=until)
    else:
        blocks = [selectors.model_accuracy_get(model_version=focus, since=since, until=until)]
    rows = []
    for block in blocks:
        reason = block.get("reason") or block.get("roc_auc_reason") or ""
        rows.append({**block, "note": reason[:1].upper() + reason[1:]})
    return rows


@login_required
@require_GET
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Traffic, latency, errors, drift, accuracy and the open alerts over one window."""
    _require_monitor(request)
    period = _period(request.GET.get("window"))
    focus = _focus(request)
    since, until = _span(period)
    latest = selectors.monitoring_report_latest(since=since, until=until)
    series = selectors.monitoring_report_series(since=since, until=until) if latest else []
    drift_block = (latest.metrics.get("drift") or {}) if latest else {}
    drift_live = focus is not None and (latest is None or latest.model_version_id != focus.pk)
    if focus is not None and drift_live:
        # Checks measure the production version only; another version is measured now, over
        # its newest predictions in the window, and has no stored history to draw.
        drift_block = selectors.model_drift_get(
            model_version=focus, since=since, until=until, max_rows=FOCUS_DRIFT_ROWS
        )
        series = []
    errors = selectors.batch_error_rate_get(since=since, until=until)
    accuracy = _accuracy_rows(since, until, focus)
    focus_query = (
        f"&{urlencode({'model': focus.name, 'version': str(focus.version)})}" if focus else ""
    )
    context = {
        "period": period,
        "focus": focus,
        "focus_query": focus_query,
        "drift_live": drift_live,
        "periods": PERIODS.values(),
        "since": since,
        "until": until,
        "has_predictions": selectors.prediction_exists(since=since, until=until),
        "latest": latest,
        "latest_metrics": latest.metrics if latest else {},
        "drift": drift_block,
        "drift_rows": _drift_rows(drift_block, series),
        "has_latency": any(point["p95"] is not None for point in series),
        "has_error_rate": any(point["error_rate"] is not None for point in series),
        "errors": errors,
        "error_percent": 100 * errors["rate"] if errors["rate"] is not None else None,
        "error_alerts": selectors.alert_list_seen(kind=AlertKind.ERROR_RATE, since=since),
        "accuracy": accuracy,
        # The accuracy chart is 1.3 in plus 1 in per version, drawn at 96 px per inch.
        "accuracy_height": round(96 * (1.3 + len(accuracy))),
        "alerts": selectors.alert_list_active(),
        "settings": {
            "interval": settings.MONITOR_INTERVAL_MINUTES,
            "check_window": settings.MONITOR_WINDOW_MINUTES,
            "psi_threshold": settings.MONITOR_PSI_THRESHOLD,
            "error_rate_percent": 100 * settings.MONITOR_ERROR_RATE,
            "p95_ms": settings.MONITOR_P95_LATENCY_MS,
        },
        "can_run_check": request.user.has_perm(RUN_CHECKS),
    }
    return render(request, "modelops/monitoring.html", context)


# --- alert actions --------------------------------------------------------------------------


def _after_action(request: AuthenticatedHttpRequest) -> HttpResponse:
    value = request.POST.get("window")
    period = PERIODS.get(value or DEFAULT_PERIOD, PERIODS[DEFAULT_PERIOD])
    return redirect(_dashboard_url(period))


def _alert_action(
    request: AuthenticatedHttpRequest, alert_id: int, action: Callable[..., Any], done: str
) -> HttpResponse:
    check_permissions(request.user, [VIEW_MONITORING, HANDLE_ALERTS])
    alert = action(alert=selectors.alert_get(alert_id=alert_id), user=request.user)
    subject = f" ({alert.subject})" if alert.subject else ""
    messages.success(request, f"{alert.get_kind_display()}{subject} {done}.")
    return _after_action(request)


@login_required
@require_POST
def alert_acknowledge_view(request: AuthenticatedHttpRequest, alert_id: int) -> HttpResponse:
    return _alert_action(request, alert_id, services.alert_acknowledge, "acknowledged")


@login_required
@require_POST
def alert_resolve_view(request: AuthenticatedHttpRequest, alert_id: int) -> HttpResponse:
    return _alert_action(request, alert_id, services.alert_resolve, "resolved")


@login_required
@require_POST
def check_run(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Admins: run one monitoring check now instead of waiting for the scheduler."""
    check_permissions(request.user, [VIEW_MONITORING, RUN_CHECKS])
    report = services.monitoring_report_create(window_minutes=settings.MONITOR_WINDOW_MINUTES)
    alerts = report.metrics.get("alerts", {})
    messages.success(
        request,
        f"Check finished: {len(alerts.get('new', []))} new, "
        f"{len(alerts.get('repeated', []))} repeated and {len(alerts.get('resolved', []))} "
        "resolved alerts.",
    )
    return _after_action(request)


# --- charts ---------------------------------------------------------------------------------
def _chart_response(
    request: AuthenticatedHttpRequest, name: str, draw: Callable[..., bytes], *args
) -> HttpResponse:
    _require_monitor(request)
    period = _period(request.GET.get("window"))
    since, until = _span(period)
    # The newest check is part of the key: a new check shows at once, not after the cache.
    newest = selectors.monitoring_report_latest()
    key = f"monitoring-chart:{name}:{period.key}:{newest.pk if newest else 0}"
    svg = cache.get(key)
    if svg is None:
        svg = draw(period, since, until, *args)
        cache.set(key, svg, settings.MONITOR_CHART_CACHE_SECONDS)
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = f"private, max-age={settings.MONITOR_CHART_CACHE_SECONDS}"
    return response


def _chart_view(name: str, draw: Callable[..., bytes]) -> Callable[..., HttpResponse]:
    @login_required
    @require_GET
    @chart_csp
    def view(request: AuthenticatedHttpRequest) -> HttpResponse:
        return _chart_response(request, name, draw)

    view.__name__ = f"chart_{name}"
    return view


bands_chart = _chart_view("bands", charts.chart_bands)
latency_chart = _chart_view("latency", charts.chart_latency)
errors_chart = _chart_view("errors", charts.chart_errors)
accuracy_chart = _chart_view("accuracy", charts.chart_accuracy)


@login_required
@require_GET
@chart_csp
def psi_chart(request: AuthenticatedHttpRequest, subject: str) -> HttpResponse:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:16]
    return _chart_response(request, f"psi:{digest}", charts.chart_psi, subject)


@login_required
@require_GET
@chart_csp
def calibration_chart(request: AuthenticatedHttpRequest, version_id: int) -> HttpResponse:
    _require_monitor(request)
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise Http404("No such model version.")
    return _chart_response(request, f"calibration:{version.pk}", charts.chart_calibration, version)


# --- the shadow comparison ------------------------------------------------------------------

DEFAULT_COMPARISON_DAYS = 30


class ComparisonForm(forms.Form):
    days = forms.IntegerField(
        min_value=1,
        max_value=365,
        required=False,
        initial=DEFAULT_COMPARISON_DAYS,
        label="Last N days",
        help_text="1 to 365",
    )
    against = forms.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        label="Answered by version",
        help_text="Only rows answered by this version (empty: any)",
    )


@login_required
@permissions_required(VIEW_MODELS, VIEW_ALL_PREDICTIONS)
def model_shadow(request: AuthenticatedHttpRequest, name: str, version: int) -> HttpResponse:
    """How this version's shadow answers compare with the answers users got."""
    mv = model_version_get(name=name, version=version)
    form = ComparisonForm(request.GET or None)
    context: dict[str, Any] = {"mv": mv, "form": form, "comparison": None}
    if form.is_bound and not form.is_valid():
        return render(request, "modelops/model_shadow.html", context, status=400)
    data = form.cleaned_data if form.is_bound else {}
    baseline = None
    if data.get("against"):
        try:
            baseline = model_version_get(name=name, version=data["against"])
        except ApplicationError:
            form.add_error("against", f"{name} has no version {data['against']}.")
            return render(request, "modelops/model_shadow.html", context, status=400)
    days = data.get("days") or DEFAULT_COMPARISON_DAYS
    until = timezone.now()
    comparison = shadow_comparison_get(
        shadow=mv, baseline=baseline, since=until - timedelta(days=days), until=until
    )
    largest = max((n for row in comparison.confusion for n in row["counts"]), default=0)
    context.update(comparison=comparison, days=days, largest_cell=largest)
    return render(request, "modelops/model_shadow.html", context)
