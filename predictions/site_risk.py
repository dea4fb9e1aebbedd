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

from django.db import connection
from django.db.models import OuterRef, Q, Subquery

from predictions.models import EXPLORATION_SOURCES, Prediction, Site

TIMELINE_POINTS = 500
TOP_RISK_DEFAULT = 10


@dataclass(frozen=True)
class SiteRisk:
    """A site and its latest prediction (None and "" while nothing was predicted there)."""

    code: str
    name: str
    latitude: float | None
    longitude: float | None
    probability: float | None
    risk_band: str
    at: datetime | None


def site_risks(*, located_only: bool = False) -> list[SiteRisk]:
    """Every site (or every site with coordinates) with its latest prediction, in code order.

    On PostgreSQL one query: each site joined LATERAL to its newest real prediction, a single
    backward probe of ``prediction_site_created`` per site (the ORM's correlated subqueries
    would probe once per column). Elsewhere (SQLite, the local default) the ORM's subqueries.
    Plain rows, not model instances: the map reads every site.
    """
    if connection.vendor == "postgresql":
        sql = _LATEST_SQL.format(
            site=Site._meta.db_table,
            prediction=Prediction._meta.db_table,
            located="AND s.latitude IS NOT NULL AND s.longitude IS NOT NULL"
            if located_only
            else "",
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [[str(source) for source in EXPLORATION_SOURCES]])
            rows = cursor.fetchall()
    else:
        newest = Prediction.objects.filter(site=OuterRef("pk")).order_by("-created_at")
        located = Q(latitude__isnull=False, longitude__isnull=False) if located_only else Q()
        rows = (
            Site.objects.filter(located)
            .annotate(
                latest_probability=Subquery(newest.values("probability")[:1]),
                latest_band=Subquery(newest.values("risk_band")[:1]),
                latest_at=Subquery(newest.values("created_at")[:1]),
            )
            .order_by("code")
            .values_list(
                "code",
                "name",
                "latitude",
                "longitude",
                "latest_probability",
                "latest_band",
                "latest_at",
            )
        )
    return [
        SiteRisk(code, name, lat, lon, probability, band or "", at)
        for code, name, lat, lon, probability, band, at in rows
    ]


# Real predictions only, as Prediction.objects reads them: the sources left out are parameters.
_LATEST_SQL = """
SELECT s.code, s.name, s.latitude, s.longitude,
       p.probability AS latest_probability, p.risk_band AS latest_band, p.created_at AS latest_at
FROM {site} s
LEFT JOIN LATERAL (
    SELECT probability, risk_band, created_at FROM {prediction}
    WHERE site_id = s.id AND source <> ALL(%s)
    ORDER BY created_at DESC LIMIT 1
) p ON true
WHERE true {located}
ORDER BY s.code
"""


def sites_top_risk(*, limit: int = TOP_RISK_DEFAULT) -> list[SiteRisk]:
    """The sites whose latest prediction is the most likely to flood, highest first."""
    predicted = [risk for risk in site_risks() if risk.probability is not None]
    predicted.sort(key=lambda risk: (-(risk.probability or 0.0), risk.code))
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
