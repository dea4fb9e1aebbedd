"""Retraining from the audit log: labelled audit rows, the retrain service and its Celery jobs.

The audit log (Prediction + Outcome) is the training data of the next model. This module
lives in predictions because it reads that log; it calls mlcore (engine, registry) like every
other predictions service, so the dependency keeps pointing one way. The promotion gate in
mlcore reads outcomes through ``outcomes_for_gate`` (named by settings.MLCORE_OUTCOME_READER).

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
from collections.abc import Callable, Iterable, Sequence
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
from mlcore.models import ModelVersion, RetrainJob, RetrainStatus
from mlcore.selectors import model_version_get_production, model_version_load
from mlcore.services import (
    engine_error_to_application,
    model_version_register,
    prediction_ids_store,
)
from predictions.models import Prediction

logger = structlog.get_logger(__name__)

# The newest rows at most; enough for any comparison and keeps memory bounded.
OUTCOME_ROWS_LIMIT = 200_000
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


def _labelled_rows(
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
    ids, frame, y = _labelled_rows(feature_names)
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
    ids, _, y = _labelled_rows(names)
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
    ids, frame, y = _labelled_rows(features)
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


def retrain_job_submit(
    *, name: str, include_original: bool, min_outcomes: int, user: Any
) -> RetrainJob:
    """Queue a retraining on a worker; a broker that cannot be reached leaves no job behind."""
    if min_outcomes < 0:
        raise ApplicationError(
            "The minimum number of outcomes cannot be negative.",
            fields={"min_outcomes": "must be 0 or more"},
        )
    model_version_get_production(name=name)  # a clear error now rather than a failed job
    job = RetrainJob.objects.create(
        name=name,
        include_original=include_original,
        min_outcomes=min_outcomes,
        created_by=user,
        step="waiting for a worker",
    )
    from mlcore.tasks import retrain_job_run_task

    try:
        retrain_job_run_task.apply_async(args=[job.pk], retry=False)
    except Exception as exc:  # the broker's client raises several types for "unreachable"
        logger.error("retrain_queue_unavailable", job=job.pk, error=str(exc))
        RetrainJob.objects.filter(pk=job.pk).delete()
        raise ApplicationError(
            "The task queue is unavailable; nothing was queued. Try again in a moment.",
            code="queue_unavailable",
            status_code=503,
        ) from exc
    logger.info("retrain_queued", job=job.pk, name=name)
    return job


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
