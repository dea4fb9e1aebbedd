"""Reads on the model registry, and the per-process cache of the loaded production model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db.models import QuerySet

from floodsite.exceptions import ApplicationError
from mlcore.engine import artifacts
from mlcore.engine.errors import ArtifactError, EngineError
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import Manifest
from mlcore.models import ModelVersion, Stage

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, ready-to-score model version."""

    model_version: ModelVersion
    model_version_id: int
    name: str
    version: int
    sha256: str
    predictor: Predictor
    manifest: Manifest
    load_ms: float

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def backend(self) -> str:
        return self.predictor.backend


def model_version_list(*, name: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("created_by")
    return qs.filter(name=name) if name else qs


MAX_VERSION = 2**31 - 1  # PositiveIntegerField's range on every database we support


def model_version_get(*, name: str, version: int) -> ModelVersion:
    try:
        if not 0 < version <= MAX_VERSION:
            raise ModelVersion.DoesNotExist
        return ModelVersion.objects.get(name=name, version=version)
    except ModelVersion.DoesNotExist:
        raise ApplicationError(
            f"Model {name} v{version} does not exist.", code="not_found", status_code=404
        ) from None


def _no_production_error(name: str) -> ApplicationError:
    return ApplicationError(
        f"No production version of model {name!r}. An administrator must train or promote "
        "one (manage.py train_model --promote).",
        code="no_production_model",
        status_code=503,
    )


def model_version_get_production(*, name: str) -> ModelVersion:
    mv = ModelVersion.objects.filter(name=name, stage=Stage.PRODUCTION).first()
    if mv is None:
        raise _no_production_error(name)
    return mv


def model_version_load(*, model_version: ModelVersion) -> LoadedModel:
    """Verify and load a version's artifact; ONNX is used when it passed the parity check."""
    started = time.perf_counter()
    label = str(model_version)
    try:
        manifest = Manifest.from_dict(model_version.manifest)
        trained_with = manifest.library_versions.get("scikit-learn", "unknown")
        pipeline = artifacts.load_artifact(
            model_version.artifact.path,
            expected_sha256=model_version.sha256,
            fmt=model_version.format,
            trained_sklearn_version=trained_with,
            label=label,
        )
        onnx_bytes = None
        if model_version.onnx_artifact:
            onnx_path = model_version.onnx_artifact.path
            if artifacts.sha256_file(onnx_path) != model_version.onnx_sha256:
                raise ArtifactError(
                    f"{label}: the ONNX file's SHA-256 differs from the registry; refusing it.",
                    code="integrity",
                )
            with open(onnx_path, "rb") as fh:
                onnx_bytes = fh.read()
    except FileNotFoundError as exc:
        raise ApplicationError(
            f"{label}: artifact file is missing ({exc.filename}).",
            code="artifact_missing",
            status_code=503,
        ) from exc
    except EngineError as exc:
        raise ApplicationError(
            exc.message if label in exc.message else f"{label}: {exc.message}",
            fields=exc.fields,
            code=exc.code,
            status_code=503,
        ) from exc
    predictor = Predictor(pipeline, manifest, onnx_bytes=onnx_bytes)
    load_ms = (time.perf_counter() - started) * 1000
    logger.info("model_loaded", model=label, backend=predictor.backend, load_ms=round(load_ms, 1))
    return LoadedModel(
        model_version=model_version,
        model_version_id=model_version.pk,
        name=model_version.name,
        version=model_version.version,
        sha256=model_version.sha256,
        predictor=predictor,
        manifest=manifest,
        load_ms=load_ms,
    )


_cache: dict[str, LoadedModel] = {}
_cache_lock = threading.Lock()


_checked_at: dict[str, float] = {}


def predictor_cache_clear(*, name: str) -> None:
    """Forget this process's copy, e.g. right after a promotion made here."""
    _cache.pop(name, None)
    _checked_at.pop(name, None)


def predictor_get_active(*, name: str) -> LoadedModel:
    """The production version of ``name``, loaded once per process.

    At most every FLOODSITE_MODEL_RECHECK_SECONDS one indexed query tells whether production
    moved to another version; the artifact is only read again when it did, so a promotion
    takes effect in every process within that time, without restarts.
    """
    cached = _cache.get(name)
    now = time.monotonic()
    if (
        cached is not None
        and now - _checked_at.get(name, 0.0) < settings.FLOODSITE_MODEL_RECHECK_SECONDS
    ):
        return cached
    current = (
        ModelVersion.objects.filter(name=name, stage=Stage.PRODUCTION)
        .values_list("pk", "sha256")
        .first()
    )
    if current is None:
        raise _no_production_error(name)
    if cached is not None and (cached.model_version_id, cached.sha256) == current:
        _checked_at[name] = now
        return cached
    with _cache_lock:
        cached = _cache.get(name)
        if cached is not None and (cached.model_version_id, cached.sha256) == current:
            return cached
        loaded = model_version_load(model_version=ModelVersion.objects.get(pk=current[0]))
        _cache[name] = loaded
        _checked_at[name] = now
        return loaded


_by_version: dict[tuple[int, str], LoadedModel] = {}


def loaded_model_get(*, model_version: ModelVersion) -> LoadedModel:
    """A specific version, verified and loaded once per process (batch jobs pin a version)."""
    key = (model_version.pk, model_version.sha256)
    loaded = _by_version.get(key)
    if loaded is None:
        with _cache_lock:
            loaded = _by_version.get(key)
            if loaded is None:
                loaded = model_version_load(model_version=model_version)
                if len(_by_version) >= 4:
                    _by_version.pop(next(iter(_by_version)))
                _by_version[key] = loaded
    return loaded
