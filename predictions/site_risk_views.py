"""Risk at places: a site's page (timeline, latest inputs), the map and its data.

The timeline is drawn on the server as inline SVG (no script, no chart library); the map is
Leaflet, served from django-leaflet's static files, drawing the markers from ``site_map_data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.http import AuthenticatedHttpRequest
from accounts.permissions import permissions_required
from accounts.roles import CHANGE_SITE, PREDICT, VIEW_SITES
from floodsite.exceptions import ApplicationError
from mlcore.selectors import predictor_get_active
from predictions.selectors import prediction_visible
from predictions.site_risk import TimelinePoint, site_risks, site_timeline
from predictions.sites import site_get

# The timeline's drawing area, in SVG user units (the SVG scales to the page's width).
WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 14, 34
RECENT_ROWS = 20


@dataclass(frozen=True)
class _Mark:
    x: float
    y: float
    point: TimelinePoint
    colour: str


NO_BAND_COLOUR = "#4a5866"  # a site with no prediction yet, or a band the model no longer has


def _production_bands() -> list[tuple[str, float, str]]:
    """The production model's bands: name, lower bound and colour (none without a model)."""
    try:
        # The process's loaded copy: no query and no manifest parsing per request.
        manifest = predictor_get_active(name=settings.FLOODSITE_MODEL_NAME).manifest
    except ApplicationError:
        return []
    return [(band.name, band.lower, band.colour) for band in manifest.risk_bands]


def _chart(points: list[TimelinePoint]) -> dict[str, Any] | None:
    """Coordinates for the timeline: probability (0-1, up) against time (left to right)."""
    if not points:
        return None
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    start, end = points[0].at, points[-1].at
    span = max((end - start).total_seconds(), 1.0)

    def x_of(point: TimelinePoint) -> float:
        if len(points) == 1:
            return LEFT + plot_w / 2
        return round(LEFT + (point.at - start).total_seconds() / span * plot_w, 1)

    def y_of(probability: float) -> float:
        return round(TOP + (1 - probability) * plot_h, 1)

    bands = _production_bands()
    colours = {name: colour for name, _, colour in bands}
    marks = [
        _Mark(x_of(p), y_of(p.probability), p, colours.get(p.risk_band, NO_BAND_COLOUR))
        for p in points
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "label_y": HEIGHT - BOTTOM + 20,
        "line": " ".join(f"{mark.x},{mark.y}" for mark in marks),
        "marks": marks,
        "outcomes": [mark for mark in marks if mark.point.flooded is not None],
        "model_changes": [mark for mark in marks if mark.point.new_model],
        "y_ticks": [(y_of(share / 4), f"{share * 25} %") for share in range(5)],
        "bands": [(y_of(lower), name) for name, lower, _ in bands if lower > 0],
        "start": start,
        "end": end,
    }


@login_required
@permissions_required(VIEW_SITES)
def site_detail(request: AuthenticatedHttpRequest, code: str) -> HttpResponse:
    """One place over time: its risk timeline, outcomes, model changes and latest inputs."""
    site = site_get(code=code)
    points = site_timeline(site=site)
    # The inputs shown are those of the newest prediction this user may read.
    latest = prediction_visible(user=request.user).filter(site=site).order_by("-created_at").first()
    readable = set(
        prediction_visible(user=request.user)
        .filter(id__in=[point.prediction_id for point in points[-RECENT_ROWS:]])
        .values_list("id", flat=True)
    )
    by_site = urlencode({"site": site.code})
    context = {
        "site": site,
        "chart": _chart(points),
        "point_count": len(points),
        "recent": [(point, point.prediction_id in readable) for point in points[::-1]][
            :RECENT_ROWS
        ],
        "latest": latest,
        "history_url": f"{reverse('history')}?{by_site}",
        "export_url": f"{reverse('history_export')}?{by_site}",
        "may_predict": request.user.has_perm(PREDICT),
        "may_change": request.user.has_perm(CHANGE_SITE),
    }
    return render(request, "predictions/site_detail.html", context)


@login_required
@permissions_required(VIEW_SITES)
def site_map(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Sites with coordinates on a map, coloured by the band of their latest prediction."""
    context = {
        "tile_url": settings.MAP_TILE_URL,
        "tile_attribution": settings.MAP_TILE_ATTRIBUTION,
        "data_url": reverse("site_map_data"),
    }
    return render(request, "predictions/site_map.html", context)


@login_required
@permissions_required(VIEW_SITES)
def site_map_data(request: AuthenticatedHttpRequest) -> JsonResponse:
    """The map's markers: every site with coordinates, its latest band and probability."""
    colours = {name: colour for name, _, colour in _production_bands()}
    # One reverse() for all: site codes are URL-safe by their rule, and 10,000 reverse() calls
    # were half of this view's time.
    page_url = reverse("site_detail", args=["0"]).removesuffix("0/")
    sites = [
        {
            "code": risk.code,
            "name": risk.name,
            "latitude": risk.latitude,
            "longitude": risk.longitude,
            "risk_band": risk.risk_band,
            "probability": risk.probability,
            "colour": colours.get(risk.risk_band, NO_BAND_COLOUR),
            "predicted_at": risk.at.isoformat() if risk.at else None,
            "url": f"{page_url}{risk.code}/",
        }
        for risk in site_risks(located_only=True)
    ]
    legend = [{"name": name, "colour": colour} for name, _, colour in _production_bands()]
    legend.append({"name": "no prediction yet", "colour": NO_BAND_COLOUR})
    return JsonResponse({"sites": sites, "bands": legend})
