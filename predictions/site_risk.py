"""Risk at places over time: the latest answer at every site, and one site's timeline.

A site is shared by the team, and so is what is known about the risk there: the map, the
"highest risk now" table and a site's timeline show every real prediction made for the site
(what-if answers are not predictions), whoever asked. The rows behind them stay private: a
link to one prediction, its inputs and the history page follow ``prediction_visible``.

Both reads follow the ``prediction_site_created`` index (site, newest first): the latest answer
of a site is one short index probe, however many rows the audit log holds, and a timeline reads
the newest TIMELINE_POINTS rows of one site.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery

from predictions.models import Prediction, Site

TIMELINE_POINTS = 500
TOP_RISK_DEFAULT = 10


@dataclass(frozen=True)
class SiteRisk:
    """A site and its latest prediction (None fields when nothing was predicted there yet)."""

    site: Site
    prediction_id: uuid.UUID | None
    probability: float | None
    risk_band: str
    at: datetime | None


def site_risks(*, located_only: bool = False) -> list[SiteRisk]:
    """Every site (or every site with coordinates) with its latest prediction, in code order.

    Two queries: the sites with the id of their latest prediction (one index probe each), then
    those predictions' few columns by primary key.
    """
    sites = Site.objects.only("id", "code", "name", "latitude", "longitude")
    if located_only:
        sites = sites.filter(latitude__isnull=False, longitude__isnull=False)
    newest = Prediction.objects.filter(site=OuterRef("pk")).order_by("-created_at").values("id")
    rows = list(sites.annotate(latest_id=Subquery(newest[:1])).order_by("code"))
    answers = {
        answer["id"]: answer
        for answer in Prediction.objects.filter(
            id__in=[site.latest_id for site in rows if site.latest_id is not None]
        ).values("id", "probability", "risk_band", "created_at")
    }
    risks = []
    for site in rows:
        answer: dict[str, Any] | None = answers.get(site.latest_id)
        risks.append(
            SiteRisk(
                site=site,
                prediction_id=answer["id"] if answer else None,
                probability=answer["probability"] if answer else None,
                risk_band=answer["risk_band"] if answer else "",
                at=answer["created_at"] if answer else None,
            )
        )
    return risks


def sites_top_risk(*, limit: int = TOP_RISK_DEFAULT) -> list[SiteRisk]:
    """The sites whose latest prediction is the most likely to flood, highest first."""
    predicted = [risk for risk in site_risks() if risk.probability is not None]
    predicted.sort(key=lambda risk: (-(risk.probability or 0.0), risk.site.code))
    return predicted[:limit]


@dataclass(frozen=True)
class TimelinePoint:
    prediction_id: uuid.UUID
    at: datetime
    probability: float
    risk_band: str
    user_id: int
    model_version_id: int
    model_label: str
    flooded: bool | None  # the recorded outcome, None while none is recorded
    new_model: bool  # answered by another model version than the point before it


def site_timeline(*, site: Site, limit: int = TIMELINE_POINTS) -> list[TimelinePoint]:
    """The site's newest ``limit`` predictions, oldest first, with outcomes and model changes."""
    rows = list(
        Prediction.objects.filter(site=site)
        .order_by("-created_at")
        .values(
            "id",
            "created_at",
            "probability",
            "risk_band",
            "user_id",
            "model_version_id",
            "model_version__name",
            "model_version__version",
            "outcome__flooded",
        )[:limit]
    )
    rows.reverse()
    points = []
    previous = None
    for row in rows:
        points.append(
            TimelinePoint(
                prediction_id=row["id"],
                at=row["created_at"],
                probability=row["probability"],
                risk_band=row["risk_band"],
                user_id=row["user_id"],
                model_version_id=row["model_version_id"],
                model_label=f"{row['model_version__name']} v{row['model_version__version']}",
                flooded=row["outcome__flooded"],
                new_model=previous is not None and previous != row["model_version_id"],
            )
        )
        previous = row["model_version_id"]
    return points
