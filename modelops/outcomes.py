"""Recorded outcomes as labelled rows: for retraining, and as the promotion gate's reader.

mlcore's gate cannot import the audit log (it sits below predictions), so this app registers
``outcomes_for_gate`` with ``mlcore.outcomes`` when Django starts (``modelops.apps``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from mlcore.engine import evaluation
from predictions.models import Prediction

# The newest rows at most; enough for any comparison and keeps memory bounded.
OUTCOME_ROWS_LIMIT = 200_000


def labelled_rows(
    feature_names: Sequence[str], *, limit: int = OUTCOME_ROWS_LIMIT
) -> tuple[list[str], pd.DataFrame, np.ndarray]:
    """Audit rows with an outcome whose inputs hold every feature, newest first."""
    rows = list(
        Prediction.objects.filter(outcome__isnull=False, inputs__has_keys=list(feature_names))
        .order_by("-created_at", "-id")
        .values_list("id", "inputs", "outcome__flooded")[:limit]
    )
    ids = [str(pk) for pk, _, _ in rows]
    frame = pd.DataFrame(
        [[inputs.get(name) for name in feature_names] for _, inputs, _ in rows],
        columns=list(feature_names),
        dtype=object,
    )
    frame = frame.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    y = np.fromiter((int(flooded) for _, _, flooded in rows), dtype=np.int64, count=len(rows))
    usable = np.isfinite(frame.to_numpy()).all(axis=1) if len(rows) else np.ones(0, dtype=bool)
    if not usable.all():
        ids = [pk for pk, keep in zip(ids, usable, strict=True) if keep]
        frame = frame[usable]
        y = y[usable]
    return ids, frame.reset_index(drop=True), y


def labelled_set_get(
    *, feature_names: Sequence[str], exclude_ids: Iterable[str] = (), min_per_class: int = 0
) -> evaluation.LabelledSet | None:
    """Recorded outcomes as a labelled set for comparing models, or None when too few.

    ``exclude_ids`` are predictions a model was trained on (they would flatter it);
    None unless at least ``min_per_class`` floods and non-floods remain (and at least one).
    """
    ids, frame, y = labelled_rows(feature_names)
    excluded = set(exclude_ids)
    if excluded:
        keep = np.array([pk not in excluded for pk in ids], dtype=bool)
        frame, y = frame[keep].reset_index(drop=True), y[keep]
    floods = int(y.sum())
    if len(y) == 0 or min(floods, len(y) - floods) < max(min_per_class, 1):
        return None
    return evaluation.LabelledSet(
        name="recorded outcomes",
        frame=frame,
        y=y,
        description=f"{len(y)} audit rows with outcomes ({floods} floods)",
    )


def outcomes_for_gate(
    *,
    candidate_features: Sequence[str],
    production_features: Sequence[str],
    exclude_ids: Iterable[str] = (),
    min_per_class: int = 0,
) -> tuple[evaluation.LabelledSet | None, str | None]:
    """Recorded outcomes both models can score, or None and the real reason there are none.

    The reason names what stands in the way, in the order a person would fix it: no
    outcomes at all; features differ (no outcome row holds every feature of one model); no
    shared rows (rows cover each model but none both, or every such row trained a model);
    too few of each class (with the counts).
    """
    names = sorted(set(candidate_features) | set(production_features))
    labelled = labelled_set_get(
        feature_names=names, exclude_ids=exclude_ids, min_per_class=min_per_class
    )
    if labelled is not None:
        return labelled, None
    return None, _why_no_outcomes(
        candidate_features, production_features, set(exclude_ids), min_per_class
    )


def _why_no_outcomes(
    candidate_features: Sequence[str],
    production_features: Sequence[str],
    excluded: set[str],
    min_per_class: int,
) -> str:
    recorded = Prediction.objects.filter(outcome__isnull=False)
    total = recorded.count()
    if total == 0:
        return "no outcomes are recorded yet"
    names = sorted(set(candidate_features) | set(production_features))
    if not recorded.filter(inputs__has_keys=names).exists():
        covering = {
            "candidate": recorded.filter(inputs__has_keys=list(candidate_features)).count(),
            "production model": recorded.filter(inputs__has_keys=list(production_features)).count(),
        }
        if all(covering.values()):
            return (
                f"no shared rows: {covering['candidate']} recorded outcomes hold the candidate's "
                f"features and {covering['production model']} the production model's, but none "
                "holds both"
            )
        model = "candidate" if covering["candidate"] == 0 else "production model"
        wanted = candidate_features if model == "candidate" else production_features
        newest = recorded.order_by("-created_at", "-id").values_list("inputs", flat=True).first()
        missing = [name for name in wanted if name not in (newest or {})]
        return (
            f"features differ: none of the {total} recorded outcomes holds every feature of the "
            f"{model} (the newest lacks {', '.join(missing)})"
        )
    ids, _, y = labelled_rows(names)
    if not ids:
        return (
            "no shared rows: the recorded outcomes with both models' features have blank or "
            "non-numeric values"
        )
    left = np.array([pk not in excluded for pk in ids], dtype=bool)
    if not left.any():
        return (
            f"no shared rows: all {len(ids)} recorded outcomes with both models' features "
            "trained one of the two models"
        )
    floods = int(y[left].sum())
    return (
        f"too few recorded outcomes of each class: {floods} floods and "
        f"{int(left.sum()) - floods} non-floods that neither model was trained on (need "
        f"{max(min_per_class, 1)} of each)"
    )
