"""CSV exports of predictions, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from predictions.models import Prediction

# A text cell starting with one of these is run as a formula by spreadsheet programs.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """Neutralise text that a spreadsheet would execute; numbers are data and pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def prediction_csv_lines(
    predictions: Iterable[Prediction], *, features: Sequence[str]
) -> Iterator[str]:
    """Header then one line per prediction: outputs, the outcome if known, the site's code and
    the context (as JSON), then the inputs."""
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            "id",
            "created_at",
            "user",
            "source",
            "model",
            "model_version",
            "probability",
            "label",
            "risk_band",
            "top_factor",
            "baseline_log_odds",
            "calibration_log_odds",
            "out_of_range",
            "observed_flooded",
            "observed_at",
            "site",
            "context",
            *features,
        ]
    )
    for p in predictions:
        outcome = getattr(p, "outcome", None)
        # Only an exact explanation (a dict with its baseline) is exported; rows scored without
        # one, and rows from before explanations added up (a list), leave both cells blank.
        explained = p.explanation if isinstance(p.explanation, dict) else {}
        factors = explained.get("factors") or []
        top = factors[0]["feature"] if factors else ""
        baseline = explained.get("baseline")
        calibration = explained.get("calibration") if baseline is not None else None
        row = [
            str(p.id),
            p.created_at.isoformat(),
            p.user.get_username(),
            p.source,
            p.model_version.name,
            p.model_version.version,
            f"{p.probability:.6f}",
            p.label,
            p.risk_band,
            top,
            "" if baseline is None else f"{baseline:.6f}",
            "" if calibration is None else f"{calibration:.6f}",
            " ".join(p.out_of_range),
            "" if outcome is None else ("yes" if outcome.flooded else "no"),
            "" if outcome is None else outcome.observed_at.isoformat(),
            p.site.code if p.site_id is not None and p.site else "",
            "" if p.context is None else json.dumps(p.context, ensure_ascii=False),
            *[p.inputs.get(name, "") for name in features],
        ]
        yield writer.writerow([safe_cell(cell) for cell in row])
