"""Registry reads: the per-process cache of serving models, the edge zip, shadow comparison."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db.models import QuerySet

from floodsite import metrics
from floodsite.exceptions import ApplicationError
from mlcore.engine import artifacts, onnx_export
from mlcore.engine.errors import ArtifactError, EngineError
from mlcore.engine.inference import Predictor
from mlcore.engine.schema import Manifest
from mlcore.models import ModelVersion, Stage, StageChange

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
    metrics.model_loaded(label, predictor.backend, load_ms / 1000)
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


def canary_bucket(*, user_id: int, name: str) -> int:
    """The user's fixed bucket (0-99) for model ``name``: a canary at N% answers buckets < N.

    A stable hash (BLAKE2b of "name:user id"), not Python's per-process ``hash()``, so every
    process and every restart sends the same user to the same model; raising the share only
    adds users, it never moves one who was already on the canary back to production.
    """
    digest = hashlib.blake2b(f"{name}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


@dataclass(frozen=True)
class ServingSet:
    """What answers live traffic for one model name, as this process last saw the registry.

    ``shadow_version_id`` is set whenever a version is in shadow, even when it could not be
    loaded here (``shadow_error`` says why), so the audit rows still name it.
    """

    production: LoadedModel
    shadow: LoadedModel | None = None
    shadow_version_id: int | None = None
    shadow_error: str = ""
    canary: LoadedModel | None = None
    canary_percent: int = 0
    canary_error: str = ""
    registry: tuple = ()  # (stage, pk, sha256, canary_percent) rows the set was built from
    built_at: float = 0.0  # time.monotonic() of the build

    def answering(self, *, user_id: int | None) -> LoadedModel:
        """The canary for users in its share (sticky per user), else production."""
        if self.canary is None or user_id is None:
            return self.production
        if canary_bucket(user_id=user_id, name=self.production.name) < self.canary_percent:
            return self.canary
        return self.production


_serving: dict[str, ServingSet] = {}
_LIVE_STAGES = (Stage.PRODUCTION, Stage.SHADOW, Stage.CANARY)
# A shadow or canary that failed to load is tried again this often, not at every recheck.
FAILED_LOAD_RETRY_SECONDS = 30.0


def predictor_cache_clear(*, name: str) -> None:
    """Forget this process's copy, e.g. right after a promotion or a stage change made here."""
    _cache.pop(name, None)
    _checked_at.pop(name, None)
    _serving.pop(name, None)


def predictor_readiness() -> str:
    """/readyz: the active version of FLOODSITE_MODEL_NAME loads (SHA-256 verified)."""
    predictor = predictor_get_active(name=settings.FLOODSITE_MODEL_NAME)
    return f"{predictor.label} ({predictor.backend})"


def predictor_get_active(*, name: str) -> LoadedModel:
    """The production version of ``name``, loaded once per process (see serving_set_get)."""
    return serving_set_get(name=name).production


def serving_set_get(*, name: str) -> ServingSet:
    """Production, and the shadow and canary when set, of ``name``, loaded once per process.

    At most every FLOODSITE_MODEL_RECHECK_SECONDS one indexed query (name, stage) tells whether
    any of them moved; artifacts are only read again for a version that changed, so a
    promotion or a shadow/canary change takes effect in every process within that time.
    Between rechecks a request costs a few dictionary lookups, shadow or not.
    """
    serving = _serving.get(name)
    now = time.monotonic()
    # _cache holding this set's production model proves nobody cleared the cache since.
    if (
        serving is not None
        and _cache.get(name) is serving.production
        and now - _checked_at.get(name, 0.0) < settings.FLOODSITE_MODEL_RECHECK_SECONDS
    ):
        return serving
    registry = tuple(
        sorted(
            ModelVersion.objects.filter(name=name, stage__in=_LIVE_STAGES).values_list(
                "stage", "pk", "sha256", "canary_percent"
            )
        )
    )
    if not any(row[0] == Stage.PRODUCTION for row in registry):
        raise _no_production_error(name)
    with _cache_lock:
        serving = _serving.get(name)
        previous = (
            serving if serving is not None and _cache.get(name) is serving.production else None
        )
        if (
            previous is not None
            and previous.registry == registry
            and (
                not (previous.shadow_error or previous.canary_error)
                or now - previous.built_at < FAILED_LOAD_RETRY_SECONDS
            )
        ):
            _checked_at[name] = now
            return previous
        serving = _serving_build(registry, previous, now)
        _serving[name] = serving
        _cache[name] = serving.production
        _checked_at[name] = now
        return serving


def _serving_build(registry: tuple, previous: ServingSet | None, now: float) -> ServingSet:
    """Load what the registry rows name, reusing models the previous set already holds.

    Production must load (its error is the caller's); a shadow or canary that cannot load is
    left out with the reason, and production answers everyone.
    """
    held = (
        [
            loaded
            for loaded in (previous.production, previous.shadow, previous.canary)
            if loaded is not None
        ]
        if previous is not None
        else []
    )

    def load(pk: int, sha256: str) -> LoadedModel:
        for loaded in held:
            if (loaded.model_version_id, loaded.sha256) == (pk, sha256):
                return loaded
        return model_version_load(model_version=ModelVersion.objects.get(pk=pk))

    rows = {stage: (pk, sha256, percent) for stage, pk, sha256, percent in registry}
    production = load(*rows[Stage.PRODUCTION][:2])

    def load_optional(stage: str) -> tuple[LoadedModel | None, str]:
        if stage not in rows:
            return None, ""
        pk, sha256, _ = rows[stage]
        try:
            return load(pk, sha256), ""
        except ApplicationError as exc:
            logger.warning(
                "serving_model_unavailable",
                stage=str(stage),
                model_version_id=pk,
                error=exc.message,
            )
            return None, exc.message

    shadow, shadow_error = load_optional(Stage.SHADOW)
    canary, canary_error = load_optional(Stage.CANARY)
    return ServingSet(
        production=production,
        shadow=shadow,
        shadow_version_id=rows[Stage.SHADOW][0] if Stage.SHADOW in rows else None,
        shadow_error=shadow_error,
        canary=canary,
        canary_percent=rows[Stage.CANARY][2] if canary is not None else 0,
        canary_error=canary_error,
        registry=registry,
        built_at=now,
    )


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


def stage_change_list(*, model_version: ModelVersion) -> QuerySet[StageChange]:
    """A version's stage history, newest first, with who made each change."""
    return model_version.stage_changes.select_related("changed_by")


# --- the edge download ------------------------------------------------------------------------

EDGE_ONNX_NAME = "model.onnx"
EDGE_MANIFEST_NAME = "manifest.json"
EDGE_SUMS_NAME = "SHA256SUMS"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same version always gives the same bytes


@dataclass(frozen=True)
class OnnxBundle:
    """A zip a field laptop needs to score offline: model.onnx, manifest.json, SHA256SUMS."""

    filename: str
    content: bytes
    onnx_sha256: str


def _no_onnx_reason(model_version: ModelVersion) -> str:
    report = model_version.manifest.get("onnx") or {}
    if report.get("reason"):
        return f"the conversion failed ({report['reason']})"
    if report.get("parity_max_abs_diff") is not None:
        return (
            f"the converted model differed from scikit-learn by "
            f"{report['parity_max_abs_diff']:.2g}, more than the {report.get('tolerance')} allowed"
        )
    return "it was registered without one"


def model_version_onnx_bundle(*, model_version: ModelVersion) -> OnnxBundle:
    """The version's registered ONNX file (hash checked) with its manifest, as a zip.

    Only the file that passed the parity check at registration is served, so the field
    laptop's probabilities are the service's; a version without one, or whose file is missing
    or changed on disk, is a 409 naming the problem.
    """
    label = str(model_version)
    if not model_version.onnx_artifact:
        raise ApplicationError(
            f"{label} has no ONNX file to download: {_no_onnx_reason(model_version)}.",
            code="onnx_unavailable",
            status_code=409,
        )
    try:
        with open(model_version.onnx_artifact.path, "rb") as fh:
            onnx_bytes = fh.read()
    except FileNotFoundError:
        raise ApplicationError(
            f"{label}: the ONNX file is missing on the server.",
            code="artifact_missing",
            status_code=409,
        ) from None
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != model_version.onnx_sha256:
        raise ApplicationError(
            f"{label}: the ONNX file's SHA-256 differs from the registry; refusing to serve it.",
            code="integrity",
            status_code=409,
        )
    manifest = {
        **model_version.manifest,
        "version": model_version.version,
        "stage": model_version.stage,
        "onnx_sha256": digest,
        "onnx_input": {
            "name": onnx_export.INPUT_NAME,
            "dtype": onnx_export.onnx_input_dtype(onnx_bytes),
            "order": [feature["name"] for feature in model_version.manifest["features"]],
        },
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    sums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        for name, data in ((EDGE_ONNX_NAME, onnx_bytes), (EDGE_MANIFEST_NAME, manifest_bytes))
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in (
            (EDGE_ONNX_NAME, onnx_bytes),
            (EDGE_MANIFEST_NAME, manifest_bytes),
            (EDGE_SUMS_NAME, sums.encode()),
        ):
            archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    return OnnxBundle(
        filename=f"{model_version.name}-v{model_version.version}-onnx.zip",
        content=buffer.getvalue(),
        onnx_sha256=digest,
    )
