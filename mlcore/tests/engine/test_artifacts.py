"""Tests for saving, hashing and guarded loading of model artifacts."""

from __future__ import annotations

import hashlib
import os

import joblib
import numpy as np
import pytest
import sklearn
import sklearn.base
import skops.io

from mlcore.engine import artifacts
from mlcore.engine.errors import (
    ArtifactError,
    ArtifactMissingError,
    IntegrityError,
    UntrustedArtifactError,
    VersionMismatchError,
)

INSTALLED = sklearn.__version__


class Detonator:
    """Creates a marker directory whenever it is rebuilt from a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class SkopsDetonator:
    """Creates a marker directory when skops restores its state."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        os.mkdir(state["marker"])


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_round_trip_predicts_identically(trained, tmp_path, fmt) -> None:
    path = tmp_path / f"model.{fmt}"

    digest = artifacts.save_artifact(trained.pipeline, path, fmt=fmt)
    loaded = artifacts.load_artifact(
        path, expected_sha256=digest, fmt=fmt, trained_sklearn_version=INSTALLED
    )

    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert np.array_equal(
        loaded.predict_proba(trained.x_test), trained.pipeline.predict_proba(trained.x_test)
    )
    assert sorted(os.listdir(tmp_path)) == [f"model.{fmt}"]


def test_sha256_file_streams_large_files(tmp_path) -> None:
    path = tmp_path / "blob.bin"
    payload = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(payload)

    assert artifacts.sha256_file(path) == hashlib.sha256(payload).hexdigest()


def test_saving_over_an_existing_artifact_replaces_it_whole(trained, tmp_path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"old contents")

    digest = artifacts.save_artifact(trained.pipeline, path)

    assert artifacts.sha256_file(path) == digest
    assert len(os.listdir(tmp_path)) == 1


@pytest.mark.parametrize("fmt", ["joblib", "skops"])
def test_a_flipped_byte_is_caught_before_loading(trained, tmp_path, fmt) -> None:
    path = tmp_path / f"model.{fmt}"
    digest = artifacts.save_artifact(trained.pipeline, path, fmt=fmt)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match="flood-risk v3") as caught:
        artifacts.load_artifact(
            path,
            expected_sha256=digest,
            fmt=fmt,
            trained_sklearn_version=INSTALLED,
            label="flood-risk v3",
        )

    assert caught.value.code == "integrity"
    assert isinstance(caught.value, ArtifactError)


def test_missing_file_is_reported_as_missing(tmp_path) -> None:
    with pytest.raises(ArtifactMissingError, match="flood-risk v2") as caught:
        artifacts.load_artifact(
            tmp_path / "gone.joblib",
            expected_sha256="0" * 64,
            fmt="joblib",
            trained_sklearn_version=INSTALLED,
            label="flood-risk v2",
        )

    assert caught.value.code == "artifact_missing"


def test_recorded_sklearn_version_must_match_the_installed_one(trained, tmp_path) -> None:
    path = tmp_path / "model.joblib"
    digest = artifacts.save_artifact(trained.pipeline, path)

    with pytest.raises(VersionMismatchError, match=r"1\.0\.2") as caught:
        artifacts.load_artifact(
            path, expected_sha256=digest, fmt="joblib", trained_sklearn_version="1.0.2"
        )

    assert caught.value.code == "version_mismatch"
    assert INSTALLED in caught.value.message


def test_pickled_estimators_from_another_sklearn_are_refused(trained, tmp_path, monkeypatch):
    path = tmp_path / "model.joblib"
    # The estimators stamp the running sklearn version into their pickled state; faking it
    # during the save reproduces an artifact written by another release.
    monkeypatch.setattr(sklearn.base, "__version__", "0.24.2")
    digest = artifacts.save_artifact(trained.pipeline, path)
    monkeypatch.undo()

    with pytest.raises(VersionMismatchError, match=r"0\.24\.2"):
        artifacts.load_artifact(
            path, expected_sha256=digest, fmt="joblib", trained_sklearn_version=INSTALLED
        )


def test_crafted_pickle_with_the_wrong_hash_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.joblib"
    joblib.dump(Detonator(str(marker)), path)
    registered = hashlib.sha256(b"the artifact that was really registered").hexdigest()

    with pytest.raises(IntegrityError):
        artifacts.load_artifact(
            path, expected_sha256=registered, fmt="joblib", trained_sklearn_version=INSTALLED
        )
    assert not marker.exists()

    # The payload is live: loading it without the guard does create the marker.
    joblib.load(path)
    assert marker.exists()


def test_non_pipeline_content_is_refused_after_loading(tmp_path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": [1, 2, 3]}, path)

    with pytest.raises(ArtifactError, match="not a scikit-learn Pipeline"):
        artifacts.load_artifact(
            path,
            expected_sha256=artifacts.sha256_file(path),
            fmt="joblib",
            trained_sklearn_version=INSTALLED,
        )


def test_skops_file_with_untrusted_types_is_refused_before_construction(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    skops.io.dump(SkopsDetonator(str(marker)), path)

    with pytest.raises(UntrustedArtifactError, match="SkopsDetonator") as caught:
        artifacts.load_artifact(
            path,
            expected_sha256=artifacts.sha256_file(path),
            fmt="skops",
            trained_sklearn_version=INSTALLED,
            label="flood-risk v9",
        )
    assert not marker.exists()
    assert caught.value.code == "untrusted"
    assert "flood-risk v9" in caught.value.message

    # The payload is live: trusting the type explicitly does create the marker.
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def test_unknown_format_is_refused(trained, tmp_path) -> None:
    with pytest.raises(ArtifactError, match="joblib, skops"):
        artifacts.save_artifact(trained.pipeline, tmp_path / "model.pkl", fmt="pickle")
