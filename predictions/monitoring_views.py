"""The monitoring dashboard for staff and auditors: its page, its SVG charts, alert actions.

Charts are drawn on the server with matplotlib (Agg, imported on first chart only, so other
requests never pay for it) and served as ``image/svg+xml`` from their own URLs, each cached
for MONITOR_CHART_CACHE_SECONDS. matplotlib's SVG carries style attributes, which the pages'
CSP forbids, so a chart is an ``<img>`` (which never runs script) and its response gets its
own CSP: inline styles, nothing else.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from csp.decorators import csp
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.permissions import check_permissions
from accounts.roles import HANDLE_ALERTS, RUN_CHECKS, VIEW_MONITORING
from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, Stage
from mlcore.selectors import model_version_get
from predictions import monitoring
from predictions.models import AlertKind


@dataclass(frozen=True)
class Window:
    """One choice of the dashboard's window selector."""

    key: str
    label: str
    span: timedelta
    bucket: str  # "hour" or "day": the bars of the predictions chart


WINDOWS = {
    window.key: window
    for window in (
        Window("24h", "24 hours", timedelta(hours=24), "hour"),
        Window("7d", "7 days", timedelta(days=7), "day"),
        Window("30d", "30 days", timedelta(days=30), "day"),
    )
}
DEFAULT_WINDOW = "24h"
# Drift of a version other than the one the checks measured is computed while the page loads.
FOCUS_DRIFT_ROWS = 10_000
# A chart's SVG may style itself but load, frame or run nothing.
CHART_CSP = {
    "default-src": ["'none'"],
    "style-src": ["'unsafe-inline'"],
    "frame-ancestors": ["'self'"],
}
INK, MUTED, LINE, ACCENT, DANGER = "#1b2530", "#4a5866", "#d5dde5", "#0b5cad", "#a4161a"
FALLBACK_BAND_COLOURS = ["#2b7a3d", "#8a6d00", "#b54708", "#a4161a", "#4a5866"]


# --- input ----------------------------------------------------------------------------------


def _require_monitor(request: HttpRequest) -> None:
    # Auditors and admins hold it (accounts.roles); the 403 names it.
    check_permissions(request.user, [VIEW_MONITORING])


def _window(value: str | None) -> Window:
    key = DEFAULT_WINDOW if value in (None, "") else value
    if key not in WINDOWS:
        choices = ", ".join(WINDOWS)
        raise ApplicationError(
            f"The window parameter must be one of {choices} (got {str(key)[:20]!r}).",
            fields={"window": f"choose one of {choices}"},
        )
    return WINDOWS[key]


def _span(window: Window) -> tuple[datetime, datetime]:
    until = timezone.now()
    return until - window.span, until


def _dashboard_url(window: Window) -> str:
    url = reverse("monitoring")
    return url if window.key == DEFAULT_WINDOW else f"{url}?window={window.key}"


# --- the page -------------------------------------------------------------------------------


def _drift_rows(block: dict[str, Any], series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if block.get("status") != "ok":
        return []
    threshold = settings.MONITOR_PSI_THRESHOLD
    entries = dict(block.get("features") or {})
    probability = block.get("probability") or {}
    if probability:
        entries[monitoring.PROBABILITY_SUBJECT] = probability
    alerting = {alert.subject for alert in monitoring.alert_list_active() if alert.kind == "drift"}
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


def _focus(request: HttpRequest) -> ModelVersion | None:
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
        blocks = monitoring.model_accuracy_list(since=since, until=until)
    else:
        blocks = [monitoring.model_accuracy_get(model_version=focus, since=since, until=until)]
    rows = []
    for block in blocks:
        reason = block.get("reason") or block.get("roc_auc_reason") or ""
        rows.append({**block, "note": reason[:1].upper() + reason[1:]})
    return rows


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Traffic, latency, errors, drift, accuracy and the open alerts over one window."""
    _require_monitor(request)
    window = _window(request.GET.get("window"))
    focus = _focus(request)
    since, until = _span(window)
    latest = monitoring.monitoring_report_latest(since=since, until=until)
    series = monitoring.monitoring_report_series(since=since, until=until) if latest else []
    drift_block = (latest.metrics.get("drift") or {}) if latest else {}
    drift_live = focus is not None and (latest is None or latest.model_version_id != focus.pk)
    if drift_live:
        # Checks measure the production version only; another version is measured now, over
        # its newest predictions in the window, and has no stored history to draw.
        drift_block = monitoring.model_drift_get(
            model_version=focus, since=since, until=until, max_rows=FOCUS_DRIFT_ROWS
        )
        series = []
    errors = monitoring.batch_error_rate_get(since=since, until=until)
    accuracy = _accuracy_rows(since, until, focus)
    focus_query = f"&{urlencode({'model': focus.name, 'version': focus.version})}" if focus else ""
    context = {
        "window": window,
        "focus": focus,
        "focus_query": focus_query,
        "drift_live": drift_live,
        "windows": WINDOWS.values(),
        "since": since,
        "until": until,
        "has_predictions": monitoring.prediction_exists(since=since, until=until),
        "latest": latest,
        "latest_metrics": latest.metrics if latest else {},
        "drift": drift_block,
        "drift_rows": _drift_rows(drift_block, series),
        "has_latency": any(point["p95"] is not None for point in series),
        "has_error_rate": any(point["error_rate"] is not None for point in series),
        "errors": errors,
        "error_percent": 100 * errors["rate"] if errors["rate"] is not None else None,
        "error_alerts": monitoring.alert_list_seen(kind=AlertKind.ERROR_RATE, since=since),
        "accuracy": accuracy,
        # The accuracy chart is 1.3 in plus 1 in per version, drawn at 96 px per inch.
        "accuracy_height": round(96 * (1.3 + len(accuracy))),
        "alerts": monitoring.alert_list_active(),
        "settings": {
            "interval": settings.MONITOR_INTERVAL_MINUTES,
            "check_window": settings.MONITOR_WINDOW_MINUTES,
            "psi_threshold": settings.MONITOR_PSI_THRESHOLD,
            "error_rate_percent": 100 * settings.MONITOR_ERROR_RATE,
            "p95_ms": settings.MONITOR_P95_LATENCY_MS,
        },
        "can_run_check": request.user.has_perm(RUN_CHECKS),
    }
    return render(request, "monitoring/dashboard.html", context)


# --- alert actions --------------------------------------------------------------------------


def _after_action(request: HttpRequest) -> HttpResponse:
    value = request.POST.get("window")
    window = WINDOWS.get(value or DEFAULT_WINDOW, WINDOWS[DEFAULT_WINDOW])
    return redirect(_dashboard_url(window))


def _alert_action(
    request: HttpRequest, alert_id: int, action: Callable[..., Any], done: str
) -> HttpResponse:
    check_permissions(request.user, [VIEW_MONITORING, HANDLE_ALERTS])
    alert = action(alert=monitoring.alert_get(alert_id=alert_id), user=request.user)
    subject = f" ({alert.subject})" if alert.subject else ""
    messages.success(request, f"{alert.get_kind_display()}{subject} {done}.")
    return _after_action(request)


@login_required
@require_POST
def alert_acknowledge_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _alert_action(request, alert_id, monitoring.alert_acknowledge, "acknowledged")


@login_required
@require_POST
def alert_resolve_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    return _alert_action(request, alert_id, monitoring.alert_resolve, "resolved")


@login_required
@require_POST
def check_run(request: HttpRequest) -> HttpResponse:
    """Admins: run one monitoring check now instead of waiting for the scheduler."""
    check_permissions(request.user, [VIEW_MONITORING, RUN_CHECKS])
    report = monitoring.monitoring_report_create(window_minutes=settings.MONITOR_WINDOW_MINUTES)
    alerts = report.metrics.get("alerts", {})
    messages.success(
        request,
        f"Check finished: {len(alerts.get('new', []))} new, "
        f"{len(alerts.get('repeated', []))} repeated and {len(alerts.get('resolved', []))} "
        "resolved alerts.",
    )
    return _after_action(request)


# --- charts ---------------------------------------------------------------------------------


def _matplotlib() -> Any:
    """matplotlib, configured once for SVG that keeps text as text; imported on first use."""
    os.environ.setdefault("MPLCONFIGDIR", str(settings.VAR_DIR / "matplotlib"))
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # <text> elements: crisp, small, searchable, accessible
            "svg.hashsalt": "floodsite",  # stable element ids, so equal data gives equal SVG
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
            "font.size": 10,
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.titlelocation": "left",
            "axes.edgecolor": MUTED,
            "axes.labelcolor": INK,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "xtick.color": MUTED,
            "ytick.color": MUTED,
            "text.color": INK,
            "timezone": settings.TIME_ZONE,
        }
    )
    return matplotlib


# Fixed margins (fractions of the figure) for the time charts: a layout engine would fit them
# exactly but draws every chart twice, doubling its cost.
TIME_CHART_MARGINS = {"left": 0.08, "right": 0.86, "top": 0.9, "bottom": 0.3}


def _figure(
    width: float = 8.0, height: float = 3.2, *, margins: dict[str, float] | None = None
) -> Any:
    _matplotlib()
    from matplotlib.figure import Figure

    if margins is None:
        return Figure(figsize=(width, height), layout="constrained")
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(**margins)
    return figure


def _svg(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _message_chart(title: str, message: str, *, width: float = 8.0, height: float = 1.6) -> bytes:
    """A chart that has nothing to draw still answers with a readable image saying why."""
    margins = {"left": 0.03, "right": 0.97, "top": 0.75, "bottom": 0.05}
    figure = _figure(width, height, margins=margins)
    axes = figure.subplots()
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.45, message, ha="center", va="center", color=MUTED, wrap=True)
    return _svg(figure)


def _time_axis(axes: Any) -> None:
    from matplotlib import dates

    tz = timezone.get_current_timezone()
    locator = dates.AutoDateLocator(tz=tz, minticks=3, maxticks=8)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=tz))


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _label_point(axes: Any, x: Any, y: float, text: str, colour: str) -> None:
    axes.annotate(
        text,
        (x, y),
        xytext=(4, 4),
        textcoords="offset points",
        fontsize=9,
        color=colour,
        fontweight="bold",
    )


def _threshold(axes: Any, value: float, top: float, text: str) -> None:
    """The alert threshold: a dashed line in the legend, and on the chart when it fits."""
    if value <= top:
        axes.axhline(value, color=DANGER, linestyle="--", linewidth=1, label=text)
    else:
        axes.plot(
            [], [], color=DANGER, linestyle="--", linewidth=1, label=f"{text} (off the chart)"
        )


def _legend(figure: Any, **options: Any) -> None:
    """One legend under the chart, where it never covers the data."""
    where = "outside lower center" if figure.get_layout_engine() else "lower center"
    figure.legend(loc=where, frameon=False, fontsize=9, **options)


def _bucket_starts(since: datetime, until: datetime, bucket: str) -> list[datetime]:
    start = timezone.localtime(since).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    starts = []
    while start < until:
        starts.append(start)
        start = start + step
    return starts


def _band_styles(seen: set[str]) -> tuple[list[str], dict[str, str]]:
    """Bands in the production manifest's order (then any others seen), and their colours."""
    matplotlib = _matplotlib()
    production = ModelVersion.objects.filter(
        name=settings.FLOODSITE_MODEL_NAME, stage=Stage.PRODUCTION
    ).first()
    declared = (production.manifest.get("risk_bands") if production else None) or []
    declared = sorted(declared, key=lambda band: band.get("lower", 0))
    order = [band.get("name") for band in declared]
    names = order + sorted(seen - set(order))
    colours = {}
    for i, name in enumerate(names):
        colour = next((band.get("colour") for band in declared if band.get("name") == name), None)
        ok = isinstance(colour, str) and matplotlib.colors.is_color_like(colour)
        colours[name] = colour if ok else FALLBACK_BAND_COLOURS[i % len(FALLBACK_BAND_COLOURS)]
    return names, colours


def chart_bands(window: Window, since: datetime, until: datetime) -> bytes:
    per = "hour" if window.bucket == "hour" else "day"
    title = f"Predictions per {per} by risk band, last {window.label}"
    rows = monitoring.prediction_band_series(since=since, until=until, bucket=window.bucket)
    if not rows:
        return _message_chart(title, f"No predictions were made in the last {window.label}.")
    starts = _bucket_starts(since, until, window.bucket)
    stamps = [start.timestamp() for start in starts]
    names, colours = _band_styles({row["band"] for row in rows})
    counts = {name: [0] * len(starts) for name in names}
    for row in rows:
        index = max(bisect_right(stamps, row["bucket"].timestamp()) - 1, 0)
        counts[row["band"]][index] += row["n"]
    names = [name for name in names if any(counts[name])]
    figure = _figure(margins={**TIME_CHART_MARGINS, "right": 0.97})
    axes = figure.subplots()
    positions = list(range(len(starts)))
    bottom = [0] * len(starts)
    bars = None
    for name in names:
        bars = axes.bar(
            positions, counts[name], bottom=bottom, color=colours[name], label=name, width=0.8
        )
        bottom = [b + c for b, c in zip(bottom, counts[name], strict=True)]
    axes.bar_label(bars, labels=[str(total) if total else "" for total in bottom], fontsize=8)
    every = max(1, math.ceil(len(starts) / 12))
    fmt = "%H:%M" if window.bucket == "hour" else "%d %b"
    axes.set_xticks(positions[::every], [start.strftime(fmt) for start in starts[::every]])
    axes.set_ylim(0, max(bottom) * 1.18 + 1)
    axes.set_title(title)
    axes.set_ylabel("Predictions")
    zone = timezone.get_current_timezone_name()
    axes.set_xlabel(f"{'Hour' if window.bucket == 'hour' else 'Day'} starting ({zone})")
    _legend(figure, title="Risk band", ncols=len(names))
    return _svg(figure)


def chart_latency(window: Window, since: datetime, until: datetime) -> bytes:
    title = f"Latency of web and API predictions, last {window.label}"
    points = [
        point
        for point in monitoring.monitoring_report_series(since=since, until=until)
        if point["p95"] is not None
    ]
    if not points:
        return _message_chart(
            title, "No check in this window saw web or API predictions, so no latency."
        )
    times = [point["created_at"] for point in points]
    p50 = [point["p50"] for point in points]
    p95 = [point["p95"] for point in points]
    figure = _figure(margins=TIME_CHART_MARGINS)
    axes = figure.subplots()
    marker = "o" if len(points) <= 40 else None
    axes.plot(times, p95, color=DANGER, marker=marker, markersize=3, label="p95")
    axes.plot(times, p50, color=ACCENT, marker=marker, markersize=3, label="p50")
    _label_point(axes, times[-1], p95[-1], f"p95 {_number(p95[-1])} ms", DANGER)
    _label_point(axes, times[-1], p50[-1], f"p50 {_number(p50[-1])} ms", ACCENT)
    peak = max(range(len(p95)), key=p95.__getitem__)
    if peak != len(p95) - 1:
        _label_point(axes, times[peak], p95[peak], f"max {_number(p95[peak])} ms", DANGER)
    top = max(p95) * 1.3 or 1.0
    axes.set_ylim(0, top)
    limit = settings.MONITOR_P95_LATENCY_MS
    _threshold(axes, limit, top, f"p95 alert above {_number(limit)} ms")
    if len(times) == 1:
        axes.set_xlim(times[0] - timedelta(minutes=30), times[0] + timedelta(minutes=30))
    _time_axis(axes)
    axes.set_title(title)
    axes.set_ylabel("Milliseconds")
    axes.set_xlabel(f"Check time (each over the preceding {settings.MONITOR_WINDOW_MINUTES} min)")
    _legend(figure, ncols=3)
    return _svg(figure)


def chart_errors(window: Window, since: datetime, until: datetime) -> bytes:
    title = f"Batch row error rate, last {window.label}"
    points = [
        point
        for point in monitoring.monitoring_report_series(since=since, until=until)
        if point["error_rate"] is not None
    ]
    if not points:
        return _message_chart(title, "No check in this window saw batch rows, so no error rate.")
    times = [point["created_at"] for point in points]
    rates = [100 * point["error_rate"] for point in points]
    figure = _figure(margins=TIME_CHART_MARGINS)
    axes = figure.subplots()
    # One stem per check that saw batch rows: checks without any are gaps, not zeros.
    axes.vlines(times, 0, rates, color=DANGER, linewidth=2)
    axes.plot(times, rates, "o", color=DANGER, markersize=4, label="failed share of batch rows")
    peak = max(range(len(rates)), key=rates.__getitem__)
    labelled = range(len(points)) if len(points) <= 8 else sorted({peak, len(points) - 1})
    for i in labelled:
        point = points[i]
        text = f"{rates[i]:.1f}% ({point['failed_rows']} of {point['batch_rows']} rows)"
        _label_point(axes, times[i], rates[i], text, DANGER)
    limit = 100 * settings.MONITOR_ERROR_RATE
    top = max(max(rates) * 1.3, limit * 1.2, 1.0)
    axes.set_ylim(0, top)
    _threshold(axes, limit, top, f"alert above {limit:.1f}%")
    if len(times) == 1:
        axes.set_xlim(times[0] - timedelta(minutes=30), times[0] + timedelta(minutes=30))
    _time_axis(axes)
    axes.set_title(title)
    axes.set_ylabel("Failed rows (%)")
    axes.set_xlabel(f"Check time (each over the preceding {settings.MONITOR_WINDOW_MINUTES} min)")
    _legend(figure, ncols=2)
    return _svg(figure)


def chart_psi(window: Window, since: datetime, until: datetime, subject: str) -> bytes:
    series = monitoring.monitoring_report_series(since=since, until=until)
    if not any(subject in point["psi"] for point in series):
        raise Http404("No check in this window measured drift of this feature.")
    points = [
        (point["created_at"], point["psi"][subject])
        for point in series
        if point["psi"].get(subject) is not None
    ]
    figure = _figure(2.8, 0.75, margins={"left": 0.02, "right": 0.8, "top": 0.72, "bottom": 0.08})
    axes = figure.subplots()
    axes.set_axis_off()
    threshold = settings.MONITOR_PSI_THRESHOLD
    if not points:
        axes.text(0.5, 0.5, "no PSI measured", ha="center", va="center", color=MUTED)
        return _svg(figure)
    times = [time for time, _ in points]
    values = [value for _, value in points]
    top = max(max(values), threshold) * 1.15
    axes.set_ylim(0, top)
    axes.axhline(threshold, color=DANGER, linestyle=":", linewidth=1)
    last = values[-1]
    colour = DANGER if last > threshold else ACCENT
    axes.plot(times, values, color=colour, linewidth=1.5)
    axes.plot(times[-1:], values[-1:], "o", color=colour, markersize=3)
    if len(times) == 1:
        axes.set_xlim(times[0] - timedelta(minutes=30), times[0] + timedelta(minutes=30))
    axes.set_title(f"PSI of {subject}", fontsize=8, fontweight="normal", color=MUTED)
    axes.annotate(
        f"{last:.2f}",
        (1.0, 0.5),
        xycoords="axes fraction",
        xytext=(3, 0),
        textcoords="offset points",
        va="center",
        fontsize=9,
        fontweight="bold",
        color=colour,
    )
    return _svg(figure)


def chart_accuracy(window: Window, since: datetime, until: datetime) -> bytes:
    title = f"Accuracy on recorded outcomes per model version, last {window.label}"
    blocks = monitoring.model_accuracy_list(since=since, until=until)
    if not blocks:
        return _message_chart(
            title, "No outcomes recorded yet for predictions made in this window."
        )
    measures = [
        ("roc_auc", "ROC-AUC on outcomes", ACCENT),
        ("training_roc_auc", "ROC-AUC at training", MUTED),
        ("accuracy", "Accuracy (threshold 0.5)", "#2b7a3d"),
    ]
    figure = _figure(8.0, 1.3 + 1.0 * len(blocks))
    axes = figure.subplots()
    height = 0.8 / len(measures)
    for m, (key, label, colour) in enumerate(measures):
        positions = [i + (m - 1) * height for i in range(len(blocks))]
        values = [block.get(key) for block in blocks]
        bars = axes.barh(
            positions,
            [value or 0 for value in values],
            height=height * 0.9,
            color=colour,
            label=label,
        )
        axes.bar_label(
            bars,
            labels=[f"{value:.3f}" if value is not None else "n/a" for value in values],
            padding=3,
            fontsize=8,
        )
    axes.set_yticks(
        range(len(blocks)),
        [
            f"{block['model_version']}\n{block['n']} outcomes"
            + ("\n(one class only)" if block.get("roc_auc_reason") else "")
            for block in blocks
        ],
    )
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)
    axes.set_xlabel("Score (1 = perfect)")
    axes.set_title(title)
    _legend(figure, ncols=3)
    return _svg(figure)


def chart_calibration(
    window: Window, since: datetime, until: datetime, version: ModelVersion
) -> bytes:
    title = f"Calibration of {version}, last {window.label}"
    block = monitoring.model_accuracy_get(model_version=version, since=since, until=until)
    curve = block.get("calibration") or []
    if not curve:
        reason = block.get("reason") or "no outcomes yet"
        return _message_chart(title, reason[:1].upper() + reason[1:] + ".", width=5.0)
    figure = _figure(5.0, 4.2, margins={"left": 0.14, "right": 0.97, "top": 0.92, "bottom": 0.12})
    axes = figure.subplots()
    axes.plot(
        [0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="perfectly calibrated"
    )
    predicted = [row["mean_predicted"] for row in curve]
    observed = [row["observed_rate"] for row in curve]
    axes.plot(predicted, observed, color=ACCENT, marker="o", label="this version")
    for row in curve:
        axes.annotate(
            f"n={row['count']}",
            (row["mean_predicted"], row["observed_rate"]),
            xytext=(4, -10),
            textcoords="offset points",
            fontsize=8,
            color=MUTED,
        )
    axes.set_xlim(0, 1.05)
    axes.set_ylim(-0.02, 1.08)
    axes.set_aspect("equal")
    axes.set_xlabel("Mean predicted flood probability")
    axes.set_ylabel("Observed flood rate")
    axes.set_title(title, fontsize=10)
    brier = block.get("brier")
    summary = f"{block['n']} outcomes" + (f", Brier {brier:.3f}" if brier is not None else "")
    axes.legend(loc="lower right", frameon=False, fontsize=8, title=summary, title_fontsize=8)
    return _svg(figure)


def _chart_response(
    request: HttpRequest, name: str, draw: Callable[..., bytes], *args
) -> HttpResponse:
    _require_monitor(request)
    window = _window(request.GET.get("window"))
    since, until = _span(window)
    # The newest check is part of the key: a new check shows at once, not after the cache.
    newest = monitoring.monitoring_report_latest()
    key = f"monitoring-chart:{name}:{window.key}:{newest.pk if newest else 0}"
    svg = cache.get(key)
    if svg is None:
        svg = draw(window, since, until, *args)
        cache.set(key, svg, settings.MONITOR_CHART_CACHE_SECONDS)
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = f"private, max-age={settings.MONITOR_CHART_CACHE_SECONDS}"
    return response


def _chart_view(name: str, draw: Callable[..., bytes]) -> Callable[..., HttpResponse]:
    @login_required
    @require_GET
    @csp(CHART_CSP)
    def view(request: HttpRequest) -> HttpResponse:
        return _chart_response(request, name, draw)

    view.__name__ = f"chart_{name}"
    return view


bands_chart = _chart_view("bands", chart_bands)
latency_chart = _chart_view("latency", chart_latency)
errors_chart = _chart_view("errors", chart_errors)
accuracy_chart = _chart_view("accuracy", chart_accuracy)


@login_required
@require_GET
@csp(CHART_CSP)
def psi_chart(request: HttpRequest, subject: str) -> HttpResponse:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:16]
    return _chart_response(request, f"psi:{digest}", chart_psi, subject)


@login_required
@require_GET
@csp(CHART_CSP)
def calibration_chart(request: HttpRequest, version_id: int) -> HttpResponse:
    _require_monitor(request)
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        raise Http404("No such model version.")
    return _chart_response(request, f"calibration:{version.pk}", chart_calibration, version)
