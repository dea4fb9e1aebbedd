"""Writes on the model registry: register, promote and roll back model versions.

Every function here owns its transaction. Registration writes the artifact files first and
removes them again if the database refuses the row, so nothing is ever half-registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.db import IntegrityError as DbIntegrityError
from django.db import transaction
from django.db.models import Max

from floodsite.exceptions import ApplicationError
from mlcore.engine import artifacts, onnx_export, synthetic, training
from mlcore.engine.errors import EngineError
from mlcore.engine.schema import Manifest
from mlcore.models import ArtifactFormat, ModelVersion, Stage, StageChange
from mlcore.selectors import model_version_load, predictor_cache_clear

logger = structlog.get_logger(__name__)


def engine_error_to_application(exc: EngineError, *, status_code: int = 400) -> ApplicationError:
    """The one error type at the service boundary, keeping the engine's code and fields."""
    return ApplicationError(exc.message, fields=exc.fields, code=exc.code, status_code=status_code)


def _onnx_for(pipeline: Any, manifest: Manifest, x_check: np.ndarray) -> tuple[bytes | None, dict]:
    """Convert to ONNX and keep it only when it matches scikit-learn within tolerance."""
    try:
        onnx_bytes = onnx_export.convert_to_onnx(pipeline, len(manifest.feature_names))
        diff = onnx_export.onnx_parity(pipeline, onnx_bytes, x_check)
    except EngineError as exc:
        logger.warning("onnx_unavailable", reason=exc.message)
        return None, {"usable": False, "reason": exc.message}
    usable = bool(diff <= onnx_export.PARITY_TOLERANCE)
    report = {
        "usable": usable,
        "parity_max_abs_diff": float(diff),
        "tolerance": onnx_export.PARITY_TOLERANCE,
        "rows_checked": len(x_check),
    }
    return (onnx_bytes if usable else None), report


def model_version_register(
    *,
    pipeline: Any,
    manifest: Manifest,
    x_check: np.ndarray,
    fmt: str = ArtifactFormat.JOBLIB,
    created_by: Any = None,
    notes: str = "",
    promote: bool = False,
    reason: str = "",
) -> ModelVersion:
    """Store a trained pipeline as the next version of ``manifest.name``.

    ``x_check`` is held-out data used for the ONNX parity check that decides the fast path.
    The version is a candidate unless ``promote`` is set.
    """
    if fmt not in ArtifactFormat.values:
        raise ApplicationError(
            f"Unknown artifact format {fmt!r}.",
            fields={"format": f"must be one of {', '.join(ArtifactFormat.values)}"},
        )
    name = manifest.name
    model_dir = Path(settings.FLOODSITE_MODEL_DIR) / name
    model_dir.mkdir(parents=True, exist_ok=True)

    onnx_bytes, onnx_report = _onnx_for(pipeline, manifest, x_check)
    manifest.onnx = onnx_report

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


def model_version_promote(*, model_version: ModelVersion, user: Any, reason: str) -> ModelVersion:
    """Make ``model_version`` the production version of its name; the old one is archived.

    The artifact is loaded (hash, library versions) before anything changes, so a missing or
    tampered file is refused while the current production version keeps serving.
    """
    if not reason.strip():
        raise ApplicationError("Say why this version is promoted.", fields={"reason": "required"})
    model_version_load(model_version=model_version)
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
            if current is not None:
                _stage_set(
                    current, Stage.ARCHIVED, user=user, reason=f"replaced by {target}: {reason}"
                )
            _stage_set(target, Stage.PRODUCTION, user=user, reason=reason)
    except DbIntegrityError as exc:
        # Another promotion of the same name committed first; the constraint kept one winner.
        raise ApplicationError(
            f"Another promotion of {model_version.name} happened at the same time; try again.",
            code="conflict",
            status_code=409,
        ) from exc
    predictor_cache_clear(name=target.name)
    logger.info("model_promoted", model=str(target), reason=reason)
    model_version.refresh_from_db()
    return model_version


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
    return model_version_promote(
        model_version=previous_change.model_version, user=user, reason=f"rollback: {reason}"
    )


def _stage_set(mv: ModelVersion, stage: str, *, user: Any, reason: str) -> None:
    StageChange.objects.create(
        model_version=mv,
        from_stage=mv.stage,
        to_stage=stage,
        changed_by=user,
        reason=reason,
        metrics=mv.metrics,
    )
    mv.stage = stage
    mv.save(update_fields=["stage", "updated_at"])


def model_version_train(
    *,
    name: str,
    data_path: str | None = None,
    target: str = "flooded",
    features: list[str] | None = None,
    algorithm: str = "hgb",
    blank_target: str = "drop",
    synthetic_rows: int = 60_000,
    seed: int = 0,
    fmt: str = ArtifactFormat.JOBLIB,
    created_by: Any = None,
    notes: str = "",
    promote: bool = False,
    progress: Any = None,
) -> ModelVersion:
    """Train from a CSV (or the synthetic generator when no CSV is given) and register it."""
    say = progress or (lambda message: None)
    try:
        if data_path is None:
            say(f"generating {synthetic_rows:,} synthetic rows (seed {seed})")
            data = training.synthetic_training_data(n_rows=synthetic_rows, seed=seed)
            specs = list(synthetic.FEATURES)
            source = f"synthetic generator, {synthetic_rows} rows, seed {seed}"
        else:
            say(f"reading {data_path}")
            data = training.load_training_csv(
                data_path,
                target=target,
                features=features,
                blank_target=blank_target,
                max_bytes=settings.FLOODSITE_TRAINING_MAX_BYTES,
            )
            specs = training.features_from_frame(
                data.frame, data.features, known=synthetic.FEATURES
            )
            source = f"{Path(data_path).name}"
        for line in data.report:
            say(line)
        trained = training.train_model(
            data,
            name=name,
            algorithm=algorithm,
            seed=seed,
            feature_specs=specs,
            progress=say,
        )
    except EngineError as exc:
        raise engine_error_to_application(exc) from exc
    say(
        "held-out ROC-AUC {roc_auc:.3f}, accuracy {accuracy:.3f}, Brier {brier:.4f}".format(
            **trained.manifest.metrics
        )
    )
    say("registering (ONNX conversion and parity check)")
    return model_version_register(
        pipeline=trained.pipeline,
        manifest=trained.manifest,
        x_check=trained.x_test[:2000],
        fmt=fmt,
        created_by=created_by,
        notes=notes or f"trained from {source}",
        promote=promote,
        reason=f"trained from {source} and promoted on request",
    )


def model_version_export_onnx(*, model_version: ModelVersion, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<name>-v<N>.onnx`` and its manifest JSON (with the ONNX SHA-256) to ``out_dir``.

    The registered ONNX file is used when there is one; otherwise the verified artifact is
    converted now, so any version can go to the field.
    """
    import json

    loaded = model_version_load(model_version=model_version)
    if model_version.onnx_artifact:
        with open(model_version.onnx_artifact.path, "rb") as fh:
            onnx_bytes = fh.read()
    else:
        try:
            onnx_bytes = onnx_export.convert_to_onnx(
                loaded.predictor.pipeline, len(loaded.manifest.feature_names)
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
