"""The promotion gate's source of recorded outcomes: a reader an app above mlcore registers.

Outcomes live in the audit log (predictions), which sits above mlcore, so mlcore cannot read
them itself. The app that owns model operations registers a reader when Django starts
(``modelops.apps.ModelopsConfig.ready``); without one the gate says so and compares on its
other rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from mlcore.engine.evaluation import LabelledSet


class OutcomeReader(Protocol):
    def __call__(
        self,
        *,
        candidate_features: Sequence[str],
        production_features: Sequence[str],
        exclude_ids: Iterable[str],
        min_per_class: int,
    ) -> tuple[LabelledSet | None, str | None]: ...


_reader: OutcomeReader | None = None


def outcome_reader_register(reader: OutcomeReader | None) -> None:
    """Install the reader the gate calls (None removes it); the last registration wins."""
    global _reader
    _reader = reader


def outcomes_for_gate(
    *,
    candidate_features: Sequence[str],
    production_features: Sequence[str],
    exclude_ids: Iterable[str] = (),
    min_per_class: int = 0,
) -> tuple[LabelledSet | None, str | None]:
    """Recorded outcomes both models can score, or None and why there are none."""
    if _reader is None:
        return None, "no outcome reader is installed (the modelops app registers one)"
    return _reader(
        candidate_features=candidate_features,
        production_features=production_features,
        exclude_ids=exclude_ids,
        min_per_class=min_per_class,
    )
