"""The shadow comparison: a shadow version's stored answers against the answers users got.

Reads the audit log (predictions) for a version of the registry (mlcore): both below this app.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from mlcore.models import ModelVersion
from predictions.models import Prediction

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
