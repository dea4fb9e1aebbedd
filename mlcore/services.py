"""Writes on the model registry: register, promote and roll back model versions.

Every function here owns its transaction. Registration writes the artifact files first and
removes them again if the database refuses the row, so nothing is ever half-registered.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.db import IntegrityError as DbIntegrityError
from django.db import OperationalError, connection, transaction
from django.db.models import Max

from floodsite.exceptions import ApplicationError
from mlcore import training_data
from mlcore.engine import (
    artifacts,
    drift,
    evaluation,
    feature_schema,
    onnx_export,
    synthetic,
    training,
)
from mlcore.engine.calibration import Calibration
from mlcore.engine.errors import DataError, EngineError, SchemaError
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import (
    DEFAULT_RISK_BANDS,
    Manifest,
    bands_with_lowers,
    parse_band_option,
)
from mlcore.models import ArtifactFormat, ModelVersion, Stage, StageChange
from mlcore.outcomes import outcomes_for_gate
from mlcore.selectors import LoadedModel, model_version_load, predictor_cache_clear

logger = structlog.get_logger(__name__)


def engine_error_to_application(exc: EngineError, *, status_code: int = 400) -> ApplicationError:
    """The one error type at the service boundary, keeping the engine's code and fields."""
    return ApplicationError(exc.message, fields=exc.fields, code=exc.code, status_code=status_code)


def _onnx_for(pipeline: Any, manifest: Manifest, x_check: np.ndarray) -> tuple[bytes | None, dict]:
    """Convert to ONNX and keep it only when it matches scikit-learn within tolerance.

    A calibrated model's graph ends with its calibration map; the bare model inside it is held
    to PARITY_TOLERANCE and the calibrated output to CALIBRATED_PARITY_TOLERANCE.
    """
    mapping = Calibration.from_dict(manifest.calibration)
    tolerance = onnx_export.PARITY_TOLERANCE
    try:
        onnx_bytes = onnx_export.convert_to_onnx(
            pipeline, len(manifest.feature_names), calibration=mapping
        )
        diff = onnx_export.onnx_parity(pipeline, onnx_bytes, x_check, mapping)
        model_diff = diff
        if mapping is not None:
            tolerance = onnx_export.CALIBRATED_PARITY_TOLERANCE
            model_diff = onnx_export.onnx_parity(
                pipeline, onnx_bytes, x_check, before_calibration=True
            )
    except EngineError as exc:
        logger.warning("onnx_unavailable", reason=exc.message)
        return None, {"usable": False, "reason": exc.message}
    usable = bool(diff <= tolerance and model_diff <= onnx_export.PARITY_TOLERANCE)
    report: dict[str, Any] = {
        "usable": usable,
        "parity_max_abs_diff": float(diff),
        "tolerance": tolerance,
        "rows_checked": len(x_check),
    }
    if mapping is not None:
        report["calibration"] = mapping.method
        report["model_parity_max_abs_diff"] = float(model_diff)
    return (onnx_bytes if usable else None), report


@dataclass(frozen=True)
class PreparedModel:
    """A trained pipeline ready to store: converted to ONNX when parity holds, its manifest
    holding the ONNX report and the serving backend's probability reference."""

    pipeline: Any
    manifest: Manifest
    onnx_bytes: bytes | None


def _format_check(fmt: str) -> None:
    if fmt not in ArtifactFormat.values:
        raise ApplicationError(
            f"Unknown artifact format {fmt!r}.",
            fields={"format": f"must be one of {', '.join(ArtifactFormat.values)}"},
        )


def model_version_prepare(
    *,
    pipeline: Any,
    manifest: Manifest,
    x_check: np.ndarray,
    x_reference: np.ndarray | None = None,
) -> PreparedModel:
    """The expensive half of registering, which writes nothing: the ONNX conversion and its
    parity check on ``x_check``, then the drift reference of predicted probabilities scored
    by the backend that will serve on ``x_reference`` (default ``x_check``)."""
    onnx_bytes, onnx_report = _onnx_for(pipeline, manifest, x_check)
    manifest.onnx = onnx_report
    served = Predictor(pipeline, manifest, onnx_bytes=onnx_bytes)
    rows = x_check if x_reference is None else x_reference
    entry = drift.serving_probability_stats(served.predict_proba, rows, backend=served.backend)
    if entry is not None:
        manifest.reference[drift.PROBABILITY_KEY] = entry
    return PreparedModel(pipeline=pipeline, manifest=manifest, onnx_bytes=onnx_bytes)


def model_version_store(
    *,
    prepared: PreparedModel,
    fmt: str = ArtifactFormat.JOBLIB,
    created_by: Any = None,
    notes: str = "",
    promote: bool = False,
    reason: str = "",
) -> ModelVersion:
    """Write a prepared model's files and row as the next version of its name.

    ``prepared`` is left as it was, so one preparation may be stored more than once.
    The version is a candidate unless ``promote`` is set.
    """
    _format_check(fmt)
    pipeline, onnx_bytes = prepared.pipeline, prepared.onnx_bytes
    manifest = copy.deepcopy(prepared.manifest)
    name = manifest.name
    model_dir = Path(settings.FLOODSITE_MODEL_DIR) / name
    model_dir.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    try:
        with transaction.atomic():
            # Lock the name's rows so two registrations never pick the same version number.
            list(ModelVersion.objects.select_for_update().filter(name=name).values_list("id"))
            latest = ModelVersion.objects.filter(name=name).aggregate(v=Max("version"))["v"]
            version = (latest or 0) + 1

            stem = f"{name}-v{version}"
            artifact_path = model_dir / f"{stem}.{fmt}"
            sha = artifacts.save_artifact(pipeline, artifact_path, fmt=fmt)
            written.append(artifact_path)
            manifest.artifact_sha256 = sha

            mv = ModelVersion(
                name=name,
                version=version,
                sha256=sha,
                format=fmt,
                manifest=manifest.to_dict(),
                created_by=created_by,
                notes=notes,
            )
            mv.artifact.name = str(artifact_path.relative_to(settings.MEDIA_ROOT))
            if onnx_bytes is not None:
                onnx_path = model_dir / f"{stem}.onnx"
                onnx_path.write_bytes(onnx_bytes)
                written.append(onnx_path)
                mv.onnx_artifact.name = str(onnx_path.relative_to(settings.MEDIA_ROOT))
                mv.onnx_sha256 = artifacts.sha256_file(onnx_path)
            mv.save()
            StageChange.objects.create(
                model_version=mv,
                to_stage=Stage.CANDIDATE,
                changed_by=created_by,
                reason=notes or "registered",
                metrics=manifest.metrics,
            )
            if promote:
                model_version_promote(
                    model_version=mv, user=created_by, reason=reason or "promoted at registration"
                )
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    logger.info("model_registered", model=str(mv), sha256=mv.sha256, stage=mv.stage)
    return mv


def model_version_register(
    *,
    pipeline: Any,
    manifest: Manifest,
    x_check: np.ndarray,
    x_reference: np.ndarray | None = None,
    fmt: str = ArtifactFormat.JOBLIB,
    created_by: Any = None,
    notes: str = "",
    promote: bool = False,
    reason: str = "",
) -> ModelVersion:
    """Store a trained pipeline as the next version of ``manifest.name``: prepare it (the ONNX
    conversion and parity check on ``x_check`` that decide the fast path; the drift reference
    on ``x_reference``), then store it. The version is a candidate unless ``promote`` is set.
    """
    _format_check(fmt)
    prepared = model_version_prepare(
        pipeline=pipeline, manifest=manifest, x_check=x_check, x_reference=x_reference
    )
    return model_version_store(
        prepared=prepared,
        fmt=fmt,
        created_by=created_by,
        notes=notes,
        promote=promote,
        reason=reason,
    )


def model_version_promote(
    *, model_version: ModelVersion, user: Any, reason: str, force: bool = False
) -> ModelVersion:
    """Make ``model_version`` the production version of its name; the old one is archived.

    The artifact is loaded (hash, library versions) before anything changes, so a missing or
    tampered file is refused while the current production version keeps serving. Then the
    promotion gate compares it with the current production version on the same rows (see
    ``model_version_compare``) and refuses a worse one with a 409 ``gate_failed``, unless
    ``force`` is set (the reason then says why). The stage history keeps both models' numbers,
    the gate's verdict and whether it was forced.
    """
    if not reason.strip():
        if force:
            raise ApplicationError(
                "Say why this version is promoted despite the promotion gate.",
                fields={"reason": "required when forcing past the gate"},
            )
        raise ApplicationError("Say why this version is promoted.", fields={"reason": "required"})
    loaded = model_version_load(model_version=model_version)
    gate = _gate_check(model_version, loaded, force=force)
    return _promote(model_version, user=user, reason=reason, gate=gate)


def _promote(
    model_version: ModelVersion, *, user: Any, reason: str, gate: dict[str, Any] | None
) -> ModelVersion:
    """The stage change itself; ``gate`` is None when no gate applies (rollback)."""
    try:
        with transaction.atomic():
            target = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
            if target.stage == Stage.PRODUCTION:
                raise ApplicationError(
                    f"{target} is already in production.",
                    code="already_production",
                    status_code=409,
                )
            current = (
                ModelVersion.objects.select_for_update()
                .filter(name=target.name, stage=Stage.PRODUCTION)
                .first()
            )
            if gate is not None and (current.pk if current else None) != gate["production_id"]:
                # Someone promoted another version while this one was being compared.
                raise ApplicationError(
                    f"Production of {target.name} changed while {target} was being compared "
                    f"(now {current or 'none'}); promote again to compare with it.",
                    code="conflict",
                    status_code=409,
                )
            if current is not None:
                _stage_set(
                    current, Stage.ARCHIVED, user=user, reason=f"replaced by {target}: {reason}"
                )
            metrics = {**target.metrics, "gate": gate} if gate is not None else None
            _stage_set(target, Stage.PRODUCTION, user=user, reason=reason, metrics=metrics)
    except (DbIntegrityError, OperationalError) as exc:
        # Another promotion of the same name committed first; the constraint kept one winner.
        # (SQLite, the local default, has no row locks: the loser's write fails as "locked".)
        lost = isinstance(exc, DbIntegrityError) or (
            connection.vendor == "sqlite" and "locked" in str(exc)
        )
        if not lost:
            raise
        raise ApplicationError(
            f"Another promotion of {model_version.name} happened at the same time; try again.",
            code="conflict",
            status_code=409,
        ) from exc
    predictor_cache_clear(name=target.name)
    logger.info("model_promoted", model=str(target), reason=reason)
    model_version.refresh_from_db()
    return model_version


def model_version_compare(
    *, candidate: LoadedModel, production: LoadedModel
) -> evaluation.Comparison:
    """Score candidate and production on the same labelled rows.

    The rows: GATE_SYNTHETIC_ROWS fresh rows of the documented synthetic generator (fixed
    seed, see ``evaluation.GATE_SYNTHETIC_SEED``) when both models use only generator
    features; otherwise (a model from a CSV) the held-out split the candidate was measured on
    (kept beside its artifact, see ``mlcore.training_data``) when it holds production's
    features. Production may have trained on some of those rows, which can only flatter
    production. Plus, when the audit log holds GATE_MIN_OUTCOMES outcomes of each class whose
    inputs cover both models' features, those outcomes, leaving out any prediction either
    model was trained on. Each set left out is named with the reason in ``unavailable``.
    """
    names = (candidate.manifest.feature_names, production.manifest.feature_names)
    sets = []
    unavailable = []
    if evaluation.synthetic_covers(*names):
        sets.append(evaluation.synthetic_holdout())
    else:
        held_out, why = _held_out_for(candidate, production)
        if held_out is not None:
            sets.append(held_out)
        else:
            unavailable.append(why)
    exclude = prediction_ids_read(manifest=candidate.manifest.to_dict())
    exclude |= prediction_ids_read(manifest=production.manifest.to_dict())
    outcomes, reason = outcomes_for_gate(
        candidate_features=names[0],
        production_features=names[1],
        exclude_ids=exclude,
        min_per_class=settings.GATE_MIN_OUTCOMES,
    )
    if outcomes is not None:
        sets.append(outcomes)
    else:
        unavailable.append(f"recorded outcomes: {reason}")
    comparison = evaluation.compare(
        candidate.predictor, production.predictor, sets, bands=candidate.manifest.risk_bands
    )
    comparison.unavailable = unavailable
    return comparison


def _held_out_for(
    candidate: LoadedModel, production: LoadedModel
) -> tuple[evaluation.LabelledSet | None, str]:
    """The candidate's kept held-out split when production can score it, else why not."""
    what = training_data.HELD_OUT_SET_NAME
    held_out = training_data.held_out_get(
        manifest=candidate.manifest.to_dict(), model=candidate.label
    )
    if held_out is None:
        return None, (
            f"synthetic held-out: features differ (not all produced by the generator), and "
            f"{candidate.label} kept no held-out split"
        )
    missing = [name for name in production.manifest.feature_names if name not in held_out.frame]
    if missing:
        return None, (
            f"{what}: features differ: {production.label} uses {', '.join(missing)}, which "
            f"{candidate.label} was not trained on"
        )
    return held_out, ""


def _gate_check(model_version: ModelVersion, loaded: LoadedModel, *, force: bool) -> dict:
    """Run the promotion gate; return what the stage history records, or raise 409."""
    current = (
        ModelVersion.objects.filter(name=model_version.name, stage=Stage.PRODUCTION)
        .exclude(pk=model_version.pk)
        .first()
    )
    record: dict[str, Any] = {
        "production_id": current.pk if current else None,
        "production": str(current) if current else None,
        "forced": bool(force),
        "max_auc_drop": settings.GATE_MAX_AUC_DROP,
        "min_recall_high": settings.GATE_MIN_RECALL_HIGH,
    }
    own_reasons, notes = evaluation.own_evaluation_check(loaded.manifest.evaluation)
    if notes:
        record["evaluation_notes"] = notes
    if current is None:
        record.update(passed=True, note="no production version to compare with")
        return _gate_verdict(record, model_version, current, own_reasons, force=force)
    try:
        production = model_version_load(model_version=current)
    except ApplicationError as exc:
        # Production cannot serve anyway; a loadable candidate can only be an improvement.
        record.update(passed=True, note=f"production could not be loaded: {exc.message}")
        return _gate_verdict(record, model_version, current, own_reasons, force=force)
    try:
        comparison = model_version_compare(candidate=loaded, production=production)
    except EngineError as exc:
        raise engine_error_to_application(exc, status_code=409) from exc
    result = comparison.gate(settings.GATE_MAX_AUC_DROP, settings.GATE_MIN_RECALL_HIGH)
    record.update(comparison.to_dict(), **result.to_dict())
    if not comparison.sets:
        record.update(
            passed=False,
            reasons=[
                f"{model_version} and {current} share no labelled rows to compare on: "
                + "; ".join(comparison.unavailable)
            ],
            failures={"gate": "no common labelled rows"},
        )
    return _gate_verdict(record, model_version, current, own_reasons, force=force)


def _gate_verdict(
    record: dict[str, Any],
    model_version: ModelVersion,
    current: ModelVersion | None,
    own_reasons: list[str],
    *,
    force: bool,
) -> dict[str, Any]:
    """Add the candidate's own evaluation to the gate's record; raise 409 when it fails."""
    if own_reasons:
        record["reasons"] = [*record.get("reasons", []), *own_reasons]
        record["failures"] = {**record.get("failures", {}), "leakage": own_reasons[0]}
        record["passed"] = False
    if not record["passed"] and not force:
        against = f" against {current}" if current else ""
        raise ApplicationError(
            f"Promotion gate: {model_version} is refused{against}: "
            + "; ".join(record["reasons"])
            + ". Promote with force and a reason to override.",
            fields=record["failures"],
            code="gate_failed",
            status_code=409,
        )
    logger.info(
        "promotion_gate",
        model=str(model_version),
        production=str(current) if current else None,
        passed=record["passed"],
        forced=force,
    )
    return record


# Up to this many prediction ids go into the manifest itself; more go to a file next to the
# artifact, pinned in the manifest by its SHA-256, so the manifest (read on every model
# load) stays small.
PREDICTION_IDS_INLINE_MAX = 200


def prediction_ids_store(*, name: str, ids: list[str]) -> tuple[dict[str, Any], Path | None]:
    """The manifest entry for the prediction ids a model was trained on, and the file written
    (None when the ids are inline). The file is named by its content's hash."""
    if len(ids) <= PREDICTION_IDS_INLINE_MAX:
        return {"count": len(ids), "ids": list(ids)}, None
    content = ("\n".join(ids) + "\n").encode()
    digest = hashlib.sha256(content).hexdigest()
    model_dir = Path(settings.FLOODSITE_MODEL_DIR) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"prediction-ids-{digest[:16]}.txt"
    created = not path.exists()
    path.write_bytes(content)
    entry = {
        "count": len(ids),
        "file": str(path.relative_to(settings.MEDIA_ROOT)),
        "sha256": digest,
    }
    return entry, (path if created else None)


def prediction_ids_read(*, manifest: dict[str, Any]) -> set[str]:
    """The prediction ids a version was trained on (empty when it was not trained on any).

    A file whose SHA-256 differs from the manifest is refused rather than half-trusted.
    """
    entry = (manifest.get("data_fingerprint") or {}).get("prediction_ids")
    if not entry:
        return set()
    if "ids" in entry:
        return set(entry["ids"])
    path = Path(settings.MEDIA_ROOT) / entry["file"]
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ApplicationError(
            f"The list of predictions {manifest.get('name')} was trained on is missing "
            f"({entry['file']}).",
            code="artifact_missing",
            status_code=409,
        ) from exc
    if hashlib.sha256(content).hexdigest() != entry["sha256"]:
        raise ApplicationError(
            f"The list of predictions {manifest.get('name')} was trained on ({entry['file']}) "
            "differs from its recorded SHA-256.",
            code="integrity",
            status_code=409,
        )
    return set(content.decode().split())


def model_version_rollback(*, name: str, user: Any, reason: str) -> ModelVersion:
    """Put back the version that was in production before the current one."""
    current = ModelVersion.objects.filter(name=name, stage=Stage.PRODUCTION).first()
    previous_change = (
        StageChange.objects.filter(
            model_version__name=name, from_stage=Stage.PRODUCTION, to_stage=Stage.ARCHIVED
        )
        .exclude(model_version=current)
        .select_related("model_version")
        .first()
    )
    if previous_change is None:
        raise ApplicationError(
            f"{name} has no earlier production version to roll back to.",
            code="no_previous_version",
            status_code=409,
        )
    if not reason.strip():
        raise ApplicationError("Say why you roll back.", fields={"reason": "required"})
    # An emergency action: the promotion gate does not apply (the version served before and
    # is being restored because the newer one misbehaves), but the artifact is still verified.
    previous = previous_change.model_version
    model_version_load(model_version=previous)
    return _promote(previous, user=user, reason=f"rollback: {reason}", gate=None)


def _stage_set(
    mv: ModelVersion, stage: str, *, user: Any, reason: str, metrics: dict | None = None
) -> None:
    StageChange.objects.create(
        model_version=mv,
        from_stage=mv.stage,
        to_stage=stage,
        changed_by=user,
        reason=reason,
        metrics=mv.metrics if metrics is None else metrics,
    )
    mv.stage = stage
    if stage != Stage.CANARY:
        mv.canary_percent = 0  # a share of users only means something while in canary
    mv.save(update_fields=["stage", "canary_percent", "updated_at"])


# --- shadow and canary ----------------------------------------------------------------------

CANARY_PERCENT_RANGE = (1, 99)


def _trial_stage_check(mv: ModelVersion, *, to_stage: str, allowed_from: tuple[str, ...]) -> None:
    if mv.stage in allowed_from:
        return
    if to_stage == Stage.CANDIDATE:  # stopping a shadow or canary
        message = (
            f"{mv} is {mv.get_stage_display().lower()}, not {allowed_from[0]}; nothing to stop."
        )
    else:
        message = (
            f"{mv} is {mv.get_stage_display().lower()}; only a "
            f"{' or '.join(str(stage) for stage in allowed_from)} version can become the "
            f"{to_stage}."
        )
    raise ApplicationError(
        message, fields={"stage": f"is {mv.stage}"}, code="wrong_stage", status_code=409
    )


def _same_features(mv: ModelVersion, production: ModelVersion) -> None:
    """A shadow or canary scores the values validated for production: same features, order."""
    live = [feature["name"] for feature in production.manifest["features"]]
    mine = [feature["name"] for feature in mv.manifest["features"]]
    if live == mine:
        return
    fields = {name: f"used by {production}, missing from {mv}" for name in live if name not in mine}
    fields.update({name: f"not a feature of {production}" for name in mine if name not in live})
    if not fields:
        fields = {"features": f"same features as {production} in another order"}
    raise ApplicationError(
        f"{mv} does not take the same features as production {production}: "
        + ", ".join(sorted(fields))
        + ".",
        fields=fields,
        code="feature_mismatch",
    )


def _trial_ready(mv: ModelVersion, *, to_stage: str, allowed_from: tuple[str, ...]) -> None:
    """Before a version serves live traffic: right stage, production's features, loads cleanly.

    The load checks the artifact's SHA-256 and library versions, so a missing or tampered
    file is refused here and production keeps serving alone.
    """
    _trial_stage_check(mv, to_stage=to_stage, allowed_from=allowed_from)
    production = ModelVersion.objects.filter(name=mv.name, stage=Stage.PRODUCTION).first()
    if production is None:
        raise ApplicationError(
            f"{mv.name} has no production version to run {mv} next to.",
            code="no_production_model",
            status_code=409,
        )
    _same_features(mv, production)
    try:
        model_version_load(model_version=mv)
    except ApplicationError as exc:
        raise ApplicationError(
            exc.message, fields=exc.fields, code=exc.code, status_code=409
        ) from exc


def _trial_change(
    mv: ModelVersion,
    *,
    to_stage: str,
    allowed_from: tuple[str, ...],
    user: Any,
    reason: str,
    percent: int = 0,
) -> ModelVersion:
    """Lock, re-check and record one stage change of a shadow/canary; clear the cache."""
    try:
        with transaction.atomic():
            target = ModelVersion.objects.select_for_update().get(pk=mv.pk)
            _trial_stage_check(target, to_stage=to_stage, allowed_from=allowed_from)
            if to_stage in (Stage.SHADOW, Stage.CANARY):
                holder = (
                    ModelVersion.objects.filter(name=target.name, stage=to_stage)
                    .exclude(pk=target.pk)
                    .first()
                )
                if holder is not None:
                    raise ApplicationError(
                        f"{holder} is already the {to_stage} of {target.name}; stop it first.",
                        fields={"stage": f"{holder} holds it"},
                        code=f"{to_stage}_taken",
                        status_code=409,
                    )
            target.canary_percent = percent
            _stage_set(target, to_stage, user=user, reason=reason)
    except DbIntegrityError as exc:
        raise ApplicationError(
            f"Another change of {mv.name}'s {to_stage} happened at the same time; try again.",
            code="conflict",
            status_code=409,
        ) from exc
    predictor_cache_clear(name=target.name)
    logger.info("model_stage_changed", model=str(target), stage=to_stage, reason=reason)
    mv.refresh_from_db()
    return mv


def _reason_required(reason: str, what: str) -> None:
    if not reason.strip():
        raise ApplicationError(f"Say why {what}.", fields={"reason": "required"})


def model_version_shadow_start(
    *, model_version: ModelVersion, user: Any, reason: str
) -> ModelVersion:
    """Put a candidate in shadow: it scores every live request next to production and its
    answers are stored on the audit rows, never returned. One shadow per model name."""
    _reason_required(reason, "this version goes into shadow")
    allowed = (Stage.CANDIDATE, Stage.CANARY)
    _trial_ready(model_version, to_stage=Stage.SHADOW, allowed_from=allowed)
    return _trial_change(
        model_version, to_stage=Stage.SHADOW, allowed_from=allowed, user=user, reason=reason
    )


def model_version_shadow_stop(
    *, model_version: ModelVersion, user: Any, reason: str
) -> ModelVersion:
    """Stop shadow scoring; the version goes back to candidate (its stored answers stay)."""
    _reason_required(reason, "the shadow stops")
    return _trial_change(
        model_version,
        to_stage=Stage.CANDIDATE,
        allowed_from=(Stage.SHADOW,),
        user=user,
        reason=f"shadow stopped: {reason}",
    )


def model_version_canary_start(
    *, model_version: ModelVersion, percent: int, user: Any, reason: str
) -> ModelVersion:
    """Let a candidate (or the shadow) answer ``percent`` % of users instead of production.

    Users are split by a stable hash of their id (mlcore.selectors.canary_bucket), so each one
    always gets the same model; calling this again on the canary changes its share.
    """
    low, high = CANARY_PERCENT_RANGE
    if isinstance(percent, bool) or not isinstance(percent, int) or not low <= percent <= high:
        raise ApplicationError(
            f"A canary answers between {low}% and {high}% of users, not {percent!r}.",
            fields={"percent": f"a whole number from {low} to {high}"},
        )
    _reason_required(reason, "this version becomes the canary")
    allowed = (Stage.CANDIDATE, Stage.SHADOW, Stage.CANARY)
    _trial_ready(model_version, to_stage=Stage.CANARY, allowed_from=allowed)
    return _trial_change(
        model_version,
        to_stage=Stage.CANARY,
        allowed_from=allowed,
        user=user,
        reason=f"canary for {percent}% of users: {reason}",
        percent=percent,
    )


def model_version_canary_stop(
    *, model_version: ModelVersion, user: Any, reason: str
) -> ModelVersion:
    """Roll a canary back in one action: every user is answered by production again and the
    version goes back to candidate."""
    _reason_required(reason, "the canary stops")
    return _trial_change(
        model_version,
        to_stage=Stage.CANDIDATE,
        allowed_from=(Stage.CANARY,),
        user=user,
        reason=f"canary rolled back: {reason}",
    )


def model_version_train(
    *,
    name: str,
    data_path: str | None = None,
    target: str = "flooded",
    features: list[str] | None = None,
    algorithm: str = "hgb",
    blank_target: str = "drop",
    exclude: list[str] | None = None,
    split: str = "random",
    calibration: str = "auto",
    bands: str | None = None,
    band_recall: str | None = None,
    schema_path: str | None = None,
    synthetic_rows: int = 60_000,
    seed: int = 0,
    fmt: str = ArtifactFormat.JOBLIB,
    created_by: Any = None,
    notes: str = "",
    promote: bool = False,
    progress: Any = None,
) -> ModelVersion:
    """Train from a CSV (or the synthetic generator when no CSV is given) and register it.

    ``bands`` ("moderate=0.3,high=0.6") sets the risk bands' lower bounds; ``band_recall``
    ("moderate=0.95,high=0.8") chooses them on held-out training rows to catch those shares of
    floods. Either way the bands are stored in the model's manifest and used wherever it
    serves.

    ``schema_path`` is a YAML or JSON file of feature metadata for the CSV's columns (see
    mlcore.engine.feature_schema); what it leaves out is inferred from the data.
    """
    say = progress or (lambda message: None)
    try:
        if bands and band_recall:
            raise SchemaError(
                "give --bands or --band-recall, not both",
                fields={"bands": "conflicts with --band-recall"},
            )
        risk_bands = (
            bands_with_lowers(dict(parse_band_option(bands, "bands")))
            if bands
            else list(DEFAULT_RISK_BANDS)
        )
        recall = parse_band_option(band_recall, "band-recall") if band_recall else []
        if schema_path is not None and data_path is None:
            raise DataError(
                "a schema file describes the columns of a CSV: give the CSV too (--data)",
                fields={"schema": "needs --data"},
            )
        if data_path is None:
            say(f"generating {synthetic_rows:,} synthetic rows (seed {seed})")
            data = training.synthetic_training_data(n_rows=synthetic_rows, seed=seed)
            specs = list(synthetic.FEATURES)
            source = f"synthetic generator, {synthetic_rows} rows, seed {seed}"
        else:
            schema = None
            if schema_path is not None:
                say(f"reading feature metadata from {schema_path}")
                schema = feature_schema.read_schema_file(schema_path)
            say(f"reading {data_path}")
            data = training.load_training_csv(
                data_path,
                target=target,
                features=features,
                blank_target=blank_target,
                exclude=exclude or (),
                max_bytes=settings.FLOODSITE_TRAINING_MAX_BYTES,
            )
            specs = feature_schema.features_from_frame(
                data.frame,
                data.features,
                known=synthetic.FEATURES,
                schema=schema,
                columns=[role.name for role in data.column_roles],
                report=data.report,
                warnings=data.warnings,
            )
            source = f"{Path(data_path).name}"
        for line in data.report:
            say(line)
        for line in training.describe_data(data):
            say(line)
        trained = training.train_model(
            data,
            name=name,
            algorithm=algorithm,
            seed=seed,
            feature_specs=specs,
            progress=say,
            split=split,
            calibration=calibration,
            risk_bands=risk_bands,
            band_recall=recall,
        )
    except EngineError as exc:
        raise engine_error_to_application(exc) from exc
    say(
        "held-out ROC-AUC {roc_auc:.3f}, accuracy {accuracy:.3f}, Brier {brier:.4f}".format(
            **trained.manifest.metrics
        )
    )
    say("registering (ONNX conversion and parity check)")
    # The options that rebuild the same rows from the kept CSV (retrain --with-original).
    options = {
        "target": data.target,
        "blank_target": blank_target,
        "features": data.features,
        # How it was measured and calibrated, so a retrained candidate is measured the same way.
        "split": split,
        "calibration": calibration,
    }
    kept = training_data.kept_data_write(trained=trained, data_path=data_path, options=options)
    try:
        return model_version_register(
            pipeline=trained.pipeline,
            manifest=trained.manifest,
            x_check=trained.x_test[:2000],
            x_reference=trained.x_test,
            fmt=fmt,
            created_by=created_by,
            notes=notes or f"trained from {source}",
            promote=promote,
            reason=f"trained from {source} and promoted on request",
        )
    except BaseException:
        training_data.kept_data_remove(kept)
        raise


def model_version_export_onnx(*, model_version: ModelVersion, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<name>-v<N>.onnx`` and its manifest JSON (with the ONNX SHA-256) to ``out_dir``.

    The registered ONNX file is used when there is one; otherwise the verified artifact is
    converted now, so any version can go to the field.
    """
    loaded = model_version_load(model_version=model_version)
    if model_version.onnx_artifact:
        with open(model_version.onnx_artifact.path, "rb") as fh:
            onnx_bytes = fh.read()
    else:
        try:
            onnx_bytes = onnx_export.convert_to_onnx(
                loaded.predictor.pipeline,
                len(loaded.manifest.feature_names),
                calibration=Calibration.from_dict(loaded.manifest.calibration),
            )
        except EngineError as exc:
            raise engine_error_to_application(exc, status_code=409) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{model_version.name}-v{model_version.version}"
    onnx_path = out_dir / f"{stem}.onnx"
    onnx_path.write_bytes(onnx_bytes)
    manifest = dict(model_version.manifest)
    manifest["onnx_sha256"] = artifacts.sha256_file(onnx_path)
    manifest["onnx_input"] = {
        "name": onnx_export.INPUT_NAME,
        "dtype": onnx_export.onnx_input_dtype(onnx_bytes),
        "order": [feature["name"] for feature in manifest["features"]],
    }
    manifest_path = out_dir / f"{stem}.manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return onnx_path, manifest_path
