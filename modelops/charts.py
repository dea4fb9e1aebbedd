"""The monitoring dashboard's charts: matplotlib drawn on the server as SVG.

matplotlib (Agg) is imported on the first chart only, so other requests never pay for it.
Each ``chart_*`` takes the period the dashboard shows and returns the SVG bytes; the views
(``modelops.views``) serve and cache them.
"""

from __future__ import annotations

import io
import math
import os
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.http import Http404
from django.utils import timezone

from mlcore.models import ModelVersion
from modelops import selectors


@dataclass(frozen=True)
class Period:
    """One choice of the dashboard's period selector (``?window=``): how far back it looks."""

    key: str
    label: str
    span: timedelta
    bucket: str  # "hour" or "day": the bars of the predictions chart


PERIODS = {
    period.key: period
    for period in (
        Period("24h", "24 hours", timedelta(hours=24), "hour"),
        Period("7d", "7 days", timedelta(days=7), "day"),
        Period("30d", "30 days", timedelta(days=30), "day"),
    )
}
DEFAULT_PERIOD = "24h"

INK, MUTED, LINE, ACCENT, DANGER = "#1b2530", "#4a5866", "#d5dde5", "#0b5cad", "#a4161a"
FALLBACK_BAND_COLOURS = ["#2b7a3d", "#8a6d00", "#b54708", "#a4161a", "#4a5866"]


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
    declared = selectors.risk_bands_in_production()
    declared = sorted(declared, key=lambda band: band.get("lower", 0))
    order: list[str] = [band["name"] for band in declared]
    names = order + sorted(seen - set(order))
    colours: dict[str, str] = {}
    for i, name in enumerate(names):
        colour = next((band.get("colour") for band in declared if band.get("name") == name), None)
        if isinstance(colour, str) and matplotlib.colors.is_color_like(colour):
            colours[name] = colour
        else:
            colours[name] = FALLBACK_BAND_COLOURS[i % len(FALLBACK_BAND_COLOURS)]
    return names, colours


def chart_bands(period: Period, since: datetime, until: datetime) -> bytes:
    per = "hour" if period.bucket == "hour" else "day"
    title = f"Predictions per {per} by risk band, last {period.label}"
    rows = selectors.prediction_band_series(since=since, until=until, bucket=period.bucket)
    if not rows:
        return _message_chart(title, f"No predictions were made in the last {period.label}.")
    starts = _bucket_starts(since, until, period.bucket)
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
    fmt = "%H:%M" if period.bucket == "hour" else "%d %b"
    axes.set_xticks(positions[::every], [start.strftime(fmt) for start in starts[::every]])
    axes.set_ylim(0, max(bottom) * 1.18 + 1)
    axes.set_title(title)
    axes.set_ylabel("Predictions")
    zone = timezone.get_current_timezone_name()
    axes.set_xlabel(f"{'Hour' if period.bucket == 'hour' else 'Day'} starting ({zone})")
    _legend(figure, title="Risk band", ncols=len(names))
    return _svg(figure)


def chart_latency(period: Period, since: datetime, until: datetime) -> bytes:
    title = f"Latency of web and API predictions, last {period.label}"
    points = [
        point
        for point in selectors.monitoring_report_series(since=since, until=until)
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


def chart_errors(period: Period, since: datetime, until: datetime) -> bytes:
    title = f"Batch row error rate, last {period.label}"
    points = [
        point
        for point in selectors.monitoring_report_series(since=since, until=until)
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


def chart_psi(period: Period, since: datetime, until: datetime, subject: str) -> bytes:
    series = selectors.monitoring_report_series(since=since, until=until)
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


def chart_accuracy(period: Period, since: datetime, until: datetime) -> bytes:
    title = f"Accuracy on recorded outcomes per model version, last {period.label}"
    blocks = selectors.model_accuracy_list(since=since, until=until)
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
    period: Period, since: datetime, until: datetime, version: ModelVersion
) -> bytes:
    title = f"Calibration of {version}, last {period.label}"
    block = selectors.model_accuracy_get(model_version=version, since=since, until=until)
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
