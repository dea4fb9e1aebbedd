"""Registry services: registration, promotion, rollback and integrity-checked loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.db import IntegrityError, transaction

from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.selectors import model_version_load, predictor_get_active
from mlcore.services import model_version_promote, model_version_rollback
from mlcore.tests.factories import ModelVersionFactory, default_prepared


def test_registration_numbers_versions_and_stores_a_complete_manifest(register_model):
    first = register_model()
    second = register_model()
    assert (first.version, second.version) == (1, 2)
    assert first.stage == Stage.CANDIDATE
    manifest = first.manifest
    assert manifest["artifact_sha256"] == first.sha256
    assert len(manifest["features"]) >= 12
    feature = manifest["features"][0]
    assert {"name", "dtype", "unit", "minimum", "maximum", "description", "default"} <= set(feature)
    assert {"roc_auc", "accuracy", "brier", "recall_at_band"} <= set(manifest["metrics"])
    assert manifest["library_versions"]["scikit-learn"]
    assert manifest["data_fingerprint"]["rows"] > 0
    assert [band["name"] for band in manifest["risk_bands"]] == [
        "low",
        "moderate",
        "high",
        "severe",
    ]
    assert manifest["reference"][feature["name"]]["quantiles"]
    assert first.stage_changes.get().to_stage == Stage.CANDIDATE


def test_one_preparation_stored_twice_is_left_as_it_was(db):
    prepared = default_prepared()
    before = prepared.manifest.to_dict()
    first, second = ModelVersionFactory(), ModelVersionFactory()
    assert prepared.manifest.to_dict() == before
    assert before["artifact_sha256"] != first.sha256  # set on the stored copy only
    assert (first.version, second.version) == (1, 2)
    assert first.manifest["onnx"] == second.manifest["onnx"] == before["onnx"]


def test_register_prepares_and_stores_in_one_call(trained_default, db):
    import copy

    from mlcore.engine.drift import PROBABILITY_KEY
    from mlcore.services import model_version_register

    mv = model_version_register(
        pipeline=trained_default.pipeline,
        manifest=copy.deepcopy(trained_default.manifest),
        x_check=trained_default.x_test[:200],
    )
    assert mv.manifest["onnx"]["rows_checked"] == 200
    assert mv.manifest["onnx"]["usable"] == bool(mv.onnx_artifact)
    assert mv.manifest["reference"][PROBABILITY_KEY]
    assert mv.manifest["artifact_sha256"] == mv.sha256


def test_onnx_fast_path_is_kept_only_after_the_parity_check(register_model):
    mv = register_model()
    onnx = mv.manifest["onnx"]
    assert onnx["usable"] is True
    assert onnx["parity_max_abs_diff"] <= 1e-5
    assert mv.onnx_artifact and Path(mv.onnx_artifact.path).is_file()
    assert model_version_load(model_version=mv).backend == "onnx"


def test_skops_artifacts_load_too(register_model):
    mv = register_model(fmt="skops")
    assert mv.artifact.name.endswith(".skops")
    loaded = model_version_load(model_version=mv)
    row = np.array([[s["default"] for s in mv.manifest["features"]]], dtype=float)
    assert 0.0 <= loaded.predictor.predict_proba(row)[0] <= 1.0


def test_promotion_archives_the_old_production_version_and_records_who_and_why(
    register_model, admin_user
):
    old = register_model(promote=True)
    new = register_model()
    model_version_promote(model_version=new, user=admin_user, reason="better recall")
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.stage, new.stage) == (Stage.ARCHIVED, Stage.PRODUCTION)
    change = StageChange.objects.filter(model_version=new).first()
    assert change.to_stage == Stage.PRODUCTION
    assert change.changed_by == admin_user
    assert change.reason == "better recall"
    assert change.metrics["roc_auc"] == new.metrics["roc_auc"]


def test_promotion_needs_a_reason(register_model):
    mv = register_model()
    with pytest.raises(ApplicationError) as exc:
        model_version_promote(model_version=mv, user=None, reason="  ")
    assert exc.value.fields == {"reason": "required"}


def test_the_database_allows_one_production_version_per_name(register_model):
    register_model(promote=True)
    other = register_model()
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=other.pk).update(stage=Stage.PRODUCTION)


def test_rollback_restores_the_previous_production_version(register_model):
    first = register_model(promote=True)
    second = register_model()
    model_version_promote(model_version=second, user=None, reason="try v2")
    restored = model_version_rollback(name=first.name, user=None, reason="v2 raises false alarms")
    assert restored.pk == first.pk
    assert restored.stage == Stage.PRODUCTION
    second.refresh_from_db()
    assert second.stage == Stage.ARCHIVED
    assert "rollback: v2 raises false alarms" in restored.stage_changes.first().reason


def test_rollback_without_history_is_refused(register_model):
    mv = register_model(promote=True)
    with pytest.raises(ApplicationError, match="no earlier production version"):
        model_version_rollback(name=mv.name, user=None, reason="oops")


def test_a_tampered_artifact_is_refused_and_production_keeps_serving(register_model):
    current = register_model(promote=True)
    tampered = register_model()
    path = Path(tampered.artifact.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError) as exc:
        model_version_promote(model_version=tampered, user=None, reason="should fail")
    assert exc.value.code == "integrity"
    assert str(tampered) in exc.value.message
    current.refresh_from_db()
    assert current.stage == Stage.PRODUCTION
    assert predictor_get_active(name=current.name).model_version_id == current.pk


def test_a_missing_artifact_is_refused_naming_the_version(register_model):
    mv = register_model()
    Path(mv.artifact.path).unlink()
    with pytest.raises(ApplicationError) as exc:
        model_version_promote(model_version=mv, user=None, reason="should fail")
    assert exc.value.code == "artifact_missing"
    assert str(mv) in exc.value.message


def test_an_artifact_from_another_scikit_learn_is_refused(register_model):
    mv = register_model()
    mv.manifest["library_versions"]["scikit-learn"] = "0.24.2"
    mv.save()
    with pytest.raises(ApplicationError) as exc:
        model_version_load(model_version=mv)
    assert exc.value.code == "version_mismatch"
    assert "0.24.2" in exc.value.message


def test_the_active_model_is_cached_and_reloaded_after_a_promotion(register_model):
    first = register_model(promote=True)
    loaded = predictor_get_active(name=first.name)
    assert predictor_get_active(name=first.name) is loaded
    second = register_model()
    model_version_promote(model_version=second, user=None, reason="newer")
    reloaded = predictor_get_active(name=first.name)
    assert reloaded.model_version_id == second.pk
    assert reloaded is not loaded


def test_no_production_model_is_a_clear_503(db):
    with pytest.raises(ApplicationError) as exc:
        predictor_get_active(name="flood-risk")
    assert exc.value.status_code == 503
    assert exc.value.code == "no_production_model"


def test_a_failed_registration_leaves_no_row_and_no_file(trained_default, db, settings):
    import copy

    from mlcore.services import model_version_register

    manifest = copy.deepcopy(trained_default.manifest)
    manifest.library_versions["scikit-learn"] = "0.0.1"
    with pytest.raises(ApplicationError) as exc:
        model_version_register(
            pipeline=trained_default.pipeline,
            manifest=manifest,
            x_check=trained_default.x_test[:200],
            promote=True,
            reason="must not half-register",
        )
    assert exc.value.code == "version_mismatch"
    assert not ModelVersion.objects.exists()
    assert not StageChange.objects.exists()
    model_dir = Path(settings.FLOODSITE_MODEL_DIR) / manifest.name
    assert list(model_dir.glob("*")) == []
