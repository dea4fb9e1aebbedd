"""Label policy: reading a flood label column, and what a blank label is taken to mean.

Archives of flood records often write the label only when a flood happened and leave it
blank otherwise; other files leave it blank because nobody knows. Which one a file does
changes the problem, so the trainer never guesses: ``blank_target`` is ``no`` (a blank is the
negative class), ``yes`` (the positive class), ``drop`` (unknown: the row is left out) or
``refuse`` (stop and ask). The class counts before and after are kept, with a warning when
the choice moves the flood share by more than ``POLICY_SHIFT`` of it, drops more than that
share of the rows, or leaves data that one column alone separates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlcore.engine import assessment
from mlcore.engine.columns import NA_TOKENS
from mlcore.engine.errors import DataError

# What a blank label means: the negative class, the positive class, not known (drop the row),
# or a question the user must answer first (refuse).
BLANK_TARGET_POLICIES = ("no", "yes", "drop", "refuse")
# A label policy that changes the flood share by more than this fraction of it changes the
# problem; so does dropping more than this share of the rows.
POLICY_SHIFT = 1 / 3

_TRUE_LABELS = {"yes", "true", "y", "1", "1.0", "flood", "flooded"}
_FALSE_LABELS = {"no", "false", "n", "0", "0.0", "no_flood", "no flood", "no-flood", "not_flooded"}


def target_text(series: pd.Series) -> pd.Series:
    """The label column as stripped text, whatever pandas parsed it as."""
    if series.dtype.kind == "f" and (series.dropna() % 1 == 0).all():
        # 1/0 labels with a blank among them are parsed as 1.0/0.0; show them as written.
        series = series.astype("Int64")
    return series.astype(object).where(series.notna(), "").astype(str).str.strip()


def map_target(values: pd.Series, target: str) -> pd.Series:
    """Label text as 1 (flood) / 0 (no flood); unknown spellings are refused, counted."""
    lowered = values.str.lower()
    mapped = pd.Series(np.nan, index=values.index)
    mapped[lowered.isin(_TRUE_LABELS)] = 1.0
    mapped[lowered.isin(_FALSE_LABELS)] = 0.0
    unknown = values[mapped.isna()]
    if len(unknown):
        counts = unknown.value_counts()
        shown = ", ".join(f"{label!r} ({count})" for label, count in counts.head(5).items())
        more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
        raise DataError(
            f"target column {target!r} has values that are not flood labels: {shown}{more}. "
            "Use yes/no, true/false, y/n, 1/0 or flood/no_flood.",
            fields={target: "unrecognised labels"},
        )
    return mapped.astype(np.int64)


def _share(floods: int, rows: int) -> float | None:
    return floods / rows if rows else None


def apply_label_policy(
    text: pd.Series, target: str, blank_target: str
) -> tuple[pd.Series, np.ndarray, dict[str, Any]]:
    """Labels for the kept rows, which rows are kept, and the policy block of the manifest."""
    blank = text.str.lower().isin(NA_TOKENS).to_numpy()
    n_blank = int(blank.sum())
    labelled = map_target(text[~blank], target)
    yes, no = int(labelled.sum()), int(len(labelled) - labelled.sum())
    if n_blank and blank_target == "refuse":
        raise DataError(
            f"{n_blank} row(s) have a blank target {target!r}; say what a blank means with "
            "--blank-target no (no flood), yes (a flood) or drop (unknown: leave the row out)",
            fields={target: f"{n_blank} blank"},
        )
    notes: list[str] = []
    warnings: list[str] = []
    if blank_target == "drop" or not n_blank:
        keep = ~blank
        labels = labelled
        if n_blank:
            notes.append(f"dropped {n_blank} row(s) with a blank target")
            if len(labels) == 0:
                raise DataError(f"every row has a blank target {target!r}")
    else:
        keep = np.ones(len(text), dtype=bool)
        fill = 1 if blank_target == "yes" else 0
        labels = pd.Series(fill, index=text.index, dtype=np.int64)
        labels[~blank] = labelled
        notes.append(f"read {n_blank} blank label(s) as {blank_target!r}")
    floods = int(labels.sum())
    before = _share(yes, yes + no)
    after = _share(floods, len(labels))
    rows = len(text)
    if n_blank and blank_target == "drop" and n_blank > POLICY_SHIFT * rows:
        warnings.append(
            f"--blank-target drop removed {n_blank:,} of {rows:,} rows ({n_blank / rows:.0%}): "
            "the model learns from, and is measured on, the rows someone labelled, not the "
            "population it will score"
        )
    if n_blank and before and after is not None and abs(after - before) > POLICY_SHIFT * before:
        warnings.append(
            f"--blank-target {blank_target} moves the flood share from {before:.1%} of the "
            f"labelled rows to {after:.1%} of the training rows: be sure a blank means "
            f"{blank_target!r}"
        )
    policy = {
        "blank_target": blank_target,
        "before": {"flood": yes, "no_flood": no, "blank": n_blank, "rows": rows},
        "after": {"flood": floods, "no_flood": len(labels) - floods, "rows": len(labels)},
        "flood_share_labelled": before,
        "flood_share_after": after,
        "notes": notes,
        "warnings": warnings,
        "blank": n_blank,
    }
    if n_blank:
        notes.append(
            f"label policy {blank_target}: before {yes:,} flood, {no:,} no_flood, {n_blank:,} "
            f"blank; after {floods:,} flood, {len(labels) - floods:,} no_flood"
        )
    return labels, keep, policy


def check_policy_separation(policy: dict[str, Any], context: pd.DataFrame, y: np.ndarray) -> None:
    """Warn when, after the label policy, one column (any, not only features) splits the classes."""
    separating = assessment.separating_columns(context, y)
    policy["separating_columns"] = separating
    for name, auc in separating.items():
        policy["warnings"].append(
            f"after --blank-target {policy['blank_target']}, {name!r} alone separates the "
            f"classes (ROC-AUC {auc:.3f}): the labels kept may be an artefact of how the "
            "file was recorded"
        )
