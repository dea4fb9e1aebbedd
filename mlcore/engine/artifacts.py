"""Model artifacts on disk: atomic saving, hashing, and guarded loading (hash, version, types)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from typing import Any

import joblib
import sklearn
import skops.io as skops_io
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.pipeline import Pipeline

from mlcore.engine.errors import (
    ArtifactError,
    ArtifactMissingError,
    IntegrityError,
    UntrustedArtifactError,
    VersionMismatchError,
)

FORMATS = ("joblib", "skops")

# Types that skops does not trust by default but that the engine's own pipelines contain.
# Anything else in a skops file is refused before it is constructed.
TRUSTED_TYPES: tuple[str, ...] = (
    "mlcore.engine.encoding.FeatureEncoder",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks so large artifacts never sit in memory whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ArtifactError(
            f"unknown artifact format {fmt!r}; choose one of {', '.join(FORMATS)}",
            fields={"format": "unknown format"},
        )


def save_artifact(pipeline: Pipeline, path: str | os.PathLike[str], *, fmt: str = "joblib") -> str:
    """Write the pipeline atomically and return the SHA-256 of the bytes on disk.

    The file is written beside its destination and moved into place with os.replace, so a
    crash mid-write never leaves a truncated artifact under the final name.
    """
    _check_format(fmt)
    destination = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(destination))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=".tmp-", suffix=os.path.basename(destination)
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            if fmt == "joblib":
                joblib.dump(pipeline, stream)
            else:
                stream.write(skops_io.dumps(pipeline))
            stream.flush()
            os.fsync(stream.fileno())
        digest = sha256_file(temporary)
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return digest


def load_artifact(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str,
    fmt: str,
    trained_sklearn_version: str,
    label: str = "model",
) -> Pipeline:
    """Load a pipeline only after proving it is the file that was registered.

    Order matters: the hash is checked before a single byte is unpickled, because a pickle
    can run arbitrary code while it loads; the version check comes next because a model
    unpickled under another scikit-learn can silently predict differently.
    """
    _check_format(fmt)
    location = os.fspath(path)
    if not os.path.isfile(location):
        raise ArtifactMissingError(f"{label}: artifact file {location!r} does not exist")

    actual = sha256_file(location)
    if actual.lower() != (expected_sha256 or "").strip().lower():
        raise IntegrityError(
            f"{label}: artifact SHA-256 {actual[:12]}… does not match the registered "
            f"{(expected_sha256 or 'none')[:12]}…; the file was changed or replaced"
        )

    installed = sklearn.__version__
    if trained_sklearn_version != installed:
        raise VersionMismatchError(
            f"{label}: trained with scikit-learn {trained_sklearn_version} but "
            f"{installed} is installed; retrain or install the matching version"
        )

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            loaded = joblib.load(location) if fmt == "joblib" else _load_skops(location, label)
        except InconsistentVersionWarning as exc:
            raise VersionMismatchError(
                f"{label}: the artifact's contents come from scikit-learn "
                f"{exc.original_sklearn_version}, not {installed}"
            ) from exc
        except ArtifactError:
            raise
        except Exception as exc:
            raise ArtifactError(f"{label}: the artifact could not be loaded: {exc}") from exc

    if not isinstance(loaded, Pipeline):
        raise ArtifactError(
            f"{label}: the artifact holds a {type(loaded).__name__}, not a scikit-learn Pipeline"
        )
    return loaded


def _load_skops(location: str, label: str) -> Any:
    untrusted = skops_io.get_untrusted_types(file=location)
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise UntrustedArtifactError(
            f"{label}: the artifact contains types outside the allow-list: {', '.join(refused)}",
            fields={"types": ", ".join(refused)},
        )
    return skops_io.load(location, trusted=list(untrusted))
