"""Data kept beside a model's artifact: the CSV it was trained from and its held-out split.

Retraining "with the original data" and the promotion gate both need rows a model saw (or
was measured on) long after the upload is gone. At registration the training CSV is copied
into the model's storage folder, named by its SHA-256 (the training-data SHA-256 the
manifest already records, so one file serves every version trained from it), together with
the options it was loaded with; the held-out split a model was measured on is written next
to it as a NumPy archive. Both are verified against their SHA-256 before every use, and a
missing or changed file is refused rather than half-trusted.

Manifest entries (under ``data_fingerprint``):

* ``kept_file``: ``{"file": <path under MEDIA_ROOT>, "sha256": ..., "bytes": ..., "name":
  <the uploaded file's name>}``
* ``load_options``: ``{"target", "blank_target", "features"}``, the arguments of
  ``training.load_training_csv`` that rebuild the same rows.
* ``held_out``: ``{"file", "sha256", "rows", "floods"}``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings

from floodsite.exceptions import ApplicationError
from mlcore.engine import evaluation, training
from mlcore.engine.artifacts import sha256_file
from mlcore.engine.errors import EngineError

HELD_OUT_SET_NAME = "candidate's held-out split"


def _model_dir(name: str) -> Path:
    path = Path(settings.FLOODSITE_MODEL_DIR) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def training_data_keep(
    *, name: str, data_path: str | Path, fingerprint: dict[str, Any], options: dict[str, Any]
) -> Path | None:
    """Copy the training CSV beside the artifacts and record it in ``fingerprint``.

    The copy must hash to the SHA-256 the loader recorded when it read the file; a file
    that changed while the model was trained is refused. Returns the path written (None
    when an identical file was already kept) so a failed registration can remove it.
    """
    expected = str(fingerprint["sha256"])
    path = _model_dir(name) / f"training-data-{expected[:16]}.csv"
    created = not path.exists()
    if created:
        shutil.copyfile(data_path, path)
    if sha256_file(path) != expected:
        if created:
            path.unlink(missing_ok=True)
        raise ApplicationError(
            f"{Path(data_path).name} changed while the model was being trained (its SHA-256 "
            "no longer matches the rows read); train again from a file that is not being "
            "written to.",
            fields={"data": "changed during training"},
            code="integrity",
            status_code=409,
        )
    fingerprint["kept_file"] = {
        "file": str(path.relative_to(settings.MEDIA_ROOT)),
        "sha256": expected,
        "bytes": path.stat().st_size,
        "name": Path(data_path).name,
    }
    fingerprint["load_options"] = dict(options)
    return path if created else None


def _verified(entry: dict[str, Any], what: str, model: str) -> Path:
    path = Path(settings.MEDIA_ROOT) / entry["file"]
    if not path.is_file():
        raise ApplicationError(
            f"The {what} of {model} is missing ({entry['file']}).",
            fields={"file": "missing"},
            code="artifact_missing",
            status_code=409,
        )
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise ApplicationError(
            f"The {what} of {model} ({entry['file']}) has changed: its SHA-256 is "
            f"{actual[:12]}…, the manifest pins {entry['sha256'][:12]}…; it is not used.",
            fields={"file": "SHA-256 mismatch"},
            code="integrity",
            status_code=409,
        )
    return path


def training_data_available(*, manifest: dict[str, Any]) -> bool:
    """Whether the model's manifest names a kept training CSV (not whether it is intact)."""
    return bool((manifest.get("data_fingerprint") or {}).get("kept_file"))


def training_data_load(*, manifest: dict[str, Any], model: str) -> training.LoadedData:
    """The kept training CSV read again with the options the model was trained with."""
    fingerprint = manifest.get("data_fingerprint") or {}
    path = _verified(fingerprint["kept_file"], "kept training data", model)
    options = fingerprint.get("load_options") or {}
    try:
        return training.load_training_csv(
            path,
            target=options.get("target", manifest.get("target", "flooded")),
            features=options.get("features"),
            blank_target=options.get("blank_target", "drop"),
            max_bytes=max(settings.FLOODSITE_TRAINING_MAX_BYTES, path.stat().st_size),
        )
    except EngineError as exc:
        raise ApplicationError(
            f"The kept training data of {model} can no longer be read: {exc.message}",
            fields=exc.fields,
            code=exc.code,
            status_code=409,
        ) from exc


def held_out_keep(
    *,
    name: str,
    fingerprint: dict[str, Any],
    features: list[str],
    x: np.ndarray,
    y: np.ndarray,
) -> Path | None:
    """Write the held-out split beside the artifacts and pin it in ``fingerprint``."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x=np.ascontiguousarray(x, dtype="<f8"),
        y=np.ascontiguousarray(y, dtype="<i8"),
        features=np.array(features, dtype=str),
    )
    content = buffer.getvalue()
    digest = hashlib.sha256(content).hexdigest()
    path = _model_dir(name) / f"held-out-{digest[:16]}.npz"
    created = not path.exists()
    path.write_bytes(content)
    fingerprint["held_out"] = {
        "file": str(path.relative_to(settings.MEDIA_ROOT)),
        "sha256": digest,
        "rows": len(y),
        "floods": int(np.sum(y)),
    }
    return path if created else None


def held_out_get(*, manifest: dict[str, Any], model: str) -> evaluation.LabelledSet | None:
    """The held-out split a version was measured on, or None when none was kept."""
    entry = (manifest.get("data_fingerprint") or {}).get("held_out")
    if not entry:
        return None
    path = _verified(entry, "held-out split", model)
    with np.load(path, allow_pickle=False) as archive:
        features = [str(name) for name in archive["features"]]
        frame = pd.DataFrame(archive["x"], columns=features)
        y = archive["y"]
    return evaluation.LabelledSet(
        name=HELD_OUT_SET_NAME,
        frame=frame,
        y=y,
        description=f"{len(y)} rows {model} was measured on and not trained on",
    )


def kept_data_write(
    *,
    trained: training.TrainedModel,
    data_path: str | Path | None = None,
    options: dict[str, Any] | None = None,
) -> list[Path]:
    """Keep what a newly trained model needs later, recording it in its manifest.

    The training CSV (when it came from one) and, for a model the synthetic generator cannot
    judge, the held-out split the gate compares on. Returns the files created, for the
    caller to remove if registration fails.
    """
    manifest = trained.manifest
    written: list[Path] = []
    try:
        if data_path is not None:
            path = training_data_keep(
                name=manifest.name,
                data_path=data_path,
                fingerprint=manifest.data_fingerprint,
                options=options or {},
            )
            written += [path] if path else []
        if not evaluation.synthetic_covers(manifest.feature_names):
            path = held_out_keep(
                name=manifest.name,
                fingerprint=manifest.data_fingerprint,
                features=manifest.feature_names,
                x=trained.x_test,
                y=trained.y_test,
            )
            written += [path] if path else []
    except BaseException:
        kept_data_remove(written)
        raise
    return written


def kept_data_remove(paths: list[Path]) -> None:
    """Remove files written for a registration that did not happen."""
    for path in paths:
        path.unlink(missing_ok=True)
