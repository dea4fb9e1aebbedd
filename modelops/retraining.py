"""Retraining from the audit log: the retrain service and the worker side of its jobs.

The audit log (Prediction + Outcome) is the training data of the next model. This module
reads it (through ``modelops.outcomes``) and calls mlcore (engine, registry); neither imports
it back. Jobs are queued by ``modelops.retrain_jobs`` and run here by the worker.

``model_version_retrain``:

1. takes every prediction with an outcome whose stored inputs cover the production model's
   features (any version may have answered it), ordered by prediction id;
2. optionally adds the production model's original training data, regenerated from the
   documented synthetic generator with the row count and seed its manifest records;
3. trains the production model's algorithm with its feature specs and risk bands, holding
   out a stratified 20 % (``training.train_model``);
4. scores candidate and production on that same held-out split
   (``mlcore.engine.evaluation``) and records both in the manifest's metrics;
5. registers a candidate whose manifest records the data fingerprint (SHA-256, below) and
   the prediction ids used.

Data fingerprint: SHA-256 over the feature names and target joined by commas and a newline,
then the float64 little-endian matrix of the training rows (audit rows by prediction id, then
original rows in generator order), then their int64 labels.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from floodsite.exceptions import ApplicationError
from mlcore import training_data
from mlcore.engine import evaluation, synthetic, training
from mlcore.engine.errors import EngineError
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import Manifest
from mlcore.models import ModelVersion
from mlcore.selectors import model_version_get_production, model_version_load
from mlcore.services import (
    engine_error_to_application,
    model_version_register,
    prediction_ids_store,
)
from modelops.models import RetrainJob, RetrainStatus
from modelops.outcomes import labelled_rows

logger = structlog.get_logger(__name__)

_SYNTHETIC_SOURCE = re.compile(r"^synthetic\(n_rows=(\d+), seed=(-?\d+)\)$")

Progress = Callable[[str, int], None]


def _training_recipe(
    manifest: Manifest, features: Sequence[str], say: Progress
) -> tuple[str, str, list[tuple[str, float]]]:
    """The split, calibration and band-recall targets production was trained with.

    A time or group split on a column that is not a feature cannot be repeated (audit rows
    carry only the features); the candidate is then split at random, and the progress says so.
    """
    options = (manifest.data_fingerprint or {}).get("load_options") or {}
    split = str(options.get("split") or "random")
    column = split.partition(":")[2]
    if column and column not in features:
        say(f"production was split by {split}; audit rows have no {column!r}, so: random", 12)
        split = "random"
    bands = (manifest.evaluation or {}).get("bands") or {}
    targets = bands.get("targets") if bands.get("source") == "recall" else None
    recall = [(str(name), float(value)) for name, value in (targets or {}).items()]
    return split, str(options.get("calibration") or "auto"), recall


def _fingerprint(frame: pd.DataFrame, features: Sequence[str], target: str) -> str:
    digest = hashlib.sha256(",".join([*features, target]).encode() + b"\n")
    digest.update(np.ascontiguousarray(frame[list(features)].to_numpy(dtype="<f8")).tobytes())
    digest.update(np.ascontiguousarray(frame[target].to_numpy(dtype="<i8")).tobytes())
    return digest.hexdigest()


def _original_data(
    production: ModelVersion, features: Sequence[str], target: str
) -> tuple[pd.DataFrame, str]:
    """The production model's original training rows: its kept CSV read again with the
    options it was trained with, or the synthetic rows regenerated from its manifest."""
    fingerprint = production.manifest.get("data_fingerprint") or {}
    if training_data.training_data_available(manifest=production.manifest):
        data = training_data.training_data_load(manifest=production.manifest, model=str(production))
        missing = [name for name in features if name not in data.frame.columns]
        if missing:
            raise ApplicationError(
                f"The kept training data of {production} has no column for "
                f"{', '.join(missing)}; retrain without the original data.",
                fields={"include_original": "kept data lacks features"},
                code="original_unavailable",
            )
        kept = fingerprint["kept_file"]
        recipe = (
            f"{kept.get('name') or kept['file']} kept with {production.name} "
            f"(SHA-256 {kept['sha256'][:12]}…, {len(data.frame)} rows)"
        )
        return data.frame[[*features, data.target]].rename(columns={data.target: target}), recipe
    # A retrained production model records the original data it inherited under "original".
    recipe = str(fingerprint.get("original") or fingerprint.get("source") or "")
    match = _SYNTHETIC_SOURCE.match(recipe)
    if match is None or not set(features) <= set(synthetic.FEATURE_NAMES):
        raise ApplicationError(
            f"{production} was not trained on the synthetic generator "
            f"({recipe or 'source not recorded'}), so its original data cannot be rebuilt; "
            "retrain without the original data.",
            fields={"include_original": "original training data unavailable"},
            code="original_unavailable",
        )
    n_rows, seed = int(match.group(1)), int(match.group(2))
    original = synthetic.generate(n_rows, seed=seed)[[*features, synthetic.TARGET]]
    return original.rename(columns={synthetic.TARGET: target}), recipe


def _train_progress(say: Progress) -> Callable[[str], None]:
    # training.train_model reports these steps; map them onto the job's percentages.
    steps = {
        "Splitting": 30,
        "Fitting": 35,
        "Evaluating": 70,
        "Bootstrapping": 72,
        "Recording": 75,
        "Done": 80,
    }

    def report(message: str) -> None:
        percent = next((p for prefix, p in steps.items() if message.startswith(prefix)), 30)
        say(message, percent)

    return report


def model_version_retrain(
    *,
    name: str,
    include_original: bool = False,
    min_outcomes: int = 0,
    seed: int = 0,
    user: Any = None,
    progress: Progress | None = None,
    registered: Callable[[ModelVersion], None] | None = None,
) -> ModelVersion:
    """Train a candidate on the audit log's outcomes and register it (see the module doc).

    ``registered`` runs in the transaction that registers the candidate, so whatever it
    records (a job's success) commits together with the new version or not at all.
    """
    say: Progress = progress or (lambda message, percent: None)
    if min_outcomes < 0:
        raise ApplicationError(
            "The minimum number of outcomes cannot be negative.",
            fields={"min_outcomes": "must be 0 or more"},
        )
    say(f"loading the production version of {name}", 2)
    production = model_version_get_production(name=name)
    loaded = model_version_load(model_version=production)
    manifest = loaded.manifest
    features, target = manifest.feature_names, manifest.target

    say("reading audit rows with outcomes", 5)
    ids, frame, y = labelled_rows(features)
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    ids = [ids[i] for i in order]
    frame = frame.iloc[order].reset_index(drop=True)
    y = y[order]
    floods = int(y.sum())
    if len(y) == 0:
        raise ApplicationError(
            f"No outcomes are recorded for predictions with the features of {production}; "
            "record what happened at predicted sites first.",
            fields={"outcomes": "none recorded"},
            code="no_outcomes",
        )
    if floods in (0, len(y)):
        raise ApplicationError(
            f"All {len(y)} recorded outcomes are {'floods' if floods else 'non-floods'} "
            f"({floods} flooded, {len(y) - floods} not flooded); training needs both.",
            fields={"outcomes": f"{floods} flooded, {len(y) - floods} not flooded"},
            code="one_class",
        )
    if len(y) < min_outcomes:
        raise ApplicationError(
            f"Only {len(y)} outcomes are recorded; at least {min_outcomes} were asked for.",
            fields={"min_outcomes": f"{len(y)} available"},
            code="too_few_outcomes",
        )
    say(f"{len(y)} outcomes ({floods} floods, {len(y) - floods} non-floods)", 10)

    audit = frame.assign(**{target: y})
    original_recipe = None
    parts = [audit]
    if include_original:
        say("regenerating the original training data", 15)
        original, original_recipe = _original_data(production, features, target)
        parts.append(original)
    data_frame = pd.concat(parts, ignore_index=True)
    data_frame[target] = data_frame[target].astype(np.int64)
    n_original = len(data_frame) - len(audit)
    source = f"audit log, {len(audit)} outcomes" + (
        f" + {original_recipe}" if original_recipe else ""
    )
    data = training.LoadedData(
        frame=data_frame,
        features=list(features),
        target=target,
        report=[],
        fingerprint={
            "source": source,
            "sha256": _fingerprint(data_frame, features, target),
            "rows": len(data_frame),
            "columns": [*features, target],
            "audit_rows": len(audit),
            "audit_floods": floods,
            "original": original_recipe,
            "original_rows": n_original,
        },
    )
    split, calibration, band_recall = _training_recipe(manifest, features, say)
    try:
        trained = training.train_model(
            data,
            name=name,
            algorithm=manifest.algorithm or "hgb",
            seed=seed,
            feature_specs=manifest.features,
            risk_bands=manifest.risk_bands,
            progress=_train_progress(say),
            split=split,
            calibration=calibration,
            band_recall=band_recall,
        )
        say("comparing with production on the same held-out rows", 85)
        held_out = evaluation.LabelledSet(
            name="retraining held-out",
            frame=pd.DataFrame(trained.x_test, columns=features),
            y=trained.y_test,
            description=f"{len(trained.y_test)} rows held out of the retraining data",
        )
        candidate = Predictor(trained.pipeline, trained.manifest)
        comparison = evaluation.compare(
            candidate, loaded.predictor, [held_out], bands=trained.manifest.risk_bands
        )
    except EngineError as exc:
        raise engine_error_to_application(exc) from exc
    verdict = comparison.gate(settings.GATE_MAX_AUC_DROP, settings.GATE_MIN_RECALL_HIGH)
    trained.manifest.metrics["comparison"] = {
        "production": str(production),
        **comparison.to_dict(),
        **verdict.to_dict(),
    }

    ids_entry, ids_file = prediction_ids_store(name=name, ids=ids)
    trained.manifest.data_fingerprint["prediction_ids"] = ids_entry
    if original_recipe and training_data.training_data_available(manifest=production.manifest):
        # The candidate was trained on the same kept CSV: its own retraining can use it too.
        for key in ("kept_file", "load_options"):
            trained.manifest.data_fingerprint[key] = production.manifest["data_fingerprint"][key]
    say("registering the candidate (ONNX conversion and parity check)", 90)
    kept: list[Path] = []
    try:
        kept = training_data.kept_data_write(trained=trained)
        with transaction.atomic():
            mv = model_version_register(
                pipeline=trained.pipeline,
                manifest=trained.manifest,
                x_check=trained.x_test[:2000],
                created_by=user,
                notes=f"retrained from the {source}; compared with {production}",
            )
            if registered is not None:
                registered(mv)
    except BaseException:
        if ids_file is not None:
            Path(ids_file).unlink(missing_ok=True)
        training_data.kept_data_remove(kept)
        raise
    held = comparison.sets[0]
    say(
        f"registered {mv} as a candidate: held-out ROC-AUC {_num(held.candidate.roc_auc)} "
        f"(production {_num(held.production.roc_auc)}), recall high+ "
        f"{_num(held.candidate.recall_high)} (production {_num(held.production.recall_high)})",
        100,
    )
    logger.info("model_retrained", model=str(mv), rows=len(data_frame), outcomes=len(audit))
    return mv


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def retrain_job_run(*, job_id: int) -> RetrainJob | None:
    """Run a queued job (on a worker), reporting each step; a finished job is left alone."""
    job = RetrainJob.objects.filter(pk=job_id).first()
    if job is None or job.finished:
        return job  # a redelivered message for a job that already ended
    RetrainJob.objects.filter(pk=job.pk).update(
        status=RetrainStatus.RUNNING, started_at=timezone.now(), error=""
    )

    def progress(message: str, percent: int) -> None:
        RetrainJob.objects.filter(pk=job.pk).update(step=message[:300], percent=percent)

    def succeeded(mv: ModelVersion) -> None:
        # Committed with the candidate: a message redelivered after a crash finds the job
        # finished instead of training a second candidate.
        RetrainJob.objects.filter(pk=job.pk).update(
            status=RetrainStatus.SUCCEEDED,
            model_version=mv,
            percent=100,
            finished_at=timezone.now(),
        )

    try:
        model_version_retrain(
            name=job.name,
            include_original=job.include_original,
            min_outcomes=job.min_outcomes,
            user=job.created_by,
            progress=progress,
            registered=succeeded,
        )
    except ApplicationError as exc:
        detail = "; ".join(f"{key}: {value}" for key, value in exc.fields.items())
        RetrainJob.objects.filter(pk=job.pk).update(
            status=RetrainStatus.FAILED,
            error=exc.message + (f" ({detail})" if detail else ""),
            finished_at=timezone.now(),
        )
    except Exception as exc:
        logger.exception("retrain_failed", job=job.pk)
        RetrainJob.objects.filter(pk=job.pk).update(
            status=RetrainStatus.FAILED,
            error=f"unexpected error: {exc}",
            finished_at=timezone.now(),
        )
        raise
    job.refresh_from_db()
    return job
