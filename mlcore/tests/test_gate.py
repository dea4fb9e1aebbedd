"""The promotion gate: a worse candidate is refused against production unless forced."""

from __future__ import annotations

import threading
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import CommandError, call_command
from django.db import connection

from floodsite.exceptions import ApplicationError
from mlcore.engine import synthetic, training
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.selectors import predictor_get_active
from mlcore.services import PreparedModel, model_version_promote, model_version_rollback
from mlcore.tests.factories import ModelVersionFactory, other_good_prepared, prepared_from

CHANGELIST = "/admin/mlcore/modelversion/"


@pytest.fixture(scope="module")
def shuffled() -> PreparedModel:
    """Trained on labels shuffled at random: it ranks sites no better than chance."""
    data = training.synthetic_training_data(n_rows=3_000, seed=11)
    rng = np.random.default_rng(1)
    data.frame[synthetic.TARGET] = rng.permutation(data.frame[synthetic.TARGET].to_numpy())
    trained = training.train_model(
        data, name=django_settings.FLOODSITE_MODEL_NAME, seed=11, feature_specs=synthetic.FEATURES
    )
    return prepared_from(trained, check_rows=200)


def other_good() -> ModelVersion:
    return ModelVersionFactory.create(prepared=other_good_prepared())


@pytest.fixture
def worse(production_model, shuffled):
    return ModelVersionFactory(prepared=shuffled)


def test_a_clearly_worse_candidate_is_refused_naming_the_metrics(production_model, worse):
    with pytest.raises(ApplicationError) as caught:
        model_version_promote(model_version=worse, user=None, reason="newer")
    error = caught.value
    assert (error.status_code, error.code) == (409, "gate_failed")
    assert set(error.fields) == {"roc_auc", "recall_high"}
    assert str(worse) in error.message and str(production_model) in error.message
    assert "ROC-AUC on synthetic held-out fell from 0.8" in error.message
    assert "allowed 0.02" in error.message and "below the minimum 0.45" in error.message
    worse.refresh_from_db()
    production_model.refresh_from_db()
    assert (worse.stage, production_model.stage) == (Stage.CANDIDATE, Stage.PRODUCTION)
    assert predictor_get_active(name=worse.name).model_version_id == production_model.pk
    assert not StageChange.objects.filter(to_stage=Stage.PRODUCTION, model_version=worse).exists()


def test_the_thresholds_are_settings(production_model, worse, settings):
    settings.GATE_MAX_AUC_DROP = 1.0
    settings.GATE_MIN_RECALL_HIGH = 0.0
    model_version_promote(model_version=worse, user=None, reason="thresholds relaxed")
    assert ModelVersion.objects.get(pk=worse.pk).stage == Stage.PRODUCTION


def test_an_equally_good_candidate_passes_and_both_models_numbers_are_recorded(
    production_model, admin_user
):
    candidate = other_good()
    model_version_promote(model_version=candidate, user=admin_user, reason="fresher data")
    change = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION)
    gate = change.metrics["gate"]
    assert gate["passed"] is True and gate["forced"] is False and gate["reasons"] == []
    assert gate["production"] == str(production_model)
    assert (gate["max_auc_drop"], gate["min_recall_high"]) == (0.02, 0.45)
    [held_out] = gate["sets"]  # no outcomes recorded yet: the synthetic rows only
    assert held_out["name"] == "synthetic held-out" and held_out["n"] == 20_000
    assert held_out["candidate"]["roc_auc"] > 0.84 and held_out["production"]["roc_auc"] > 0.84
    assert held_out["candidate"]["recall_high"] >= 0.45
    assert change.metrics["roc_auc"] == candidate.metrics["roc_auc"]  # training metrics stay
    assert (change.changed_by, change.reason) == (admin_user, "fresher data")


def test_forcing_with_a_reason_promotes_and_records_that_it_was_forced(
    production_model, worse, admin_user
):
    model_version_promote(
        model_version=worse, user=admin_user, reason="emergency: gauge data changed", force=True
    )
    worse.refresh_from_db()
    assert worse.stage == Stage.PRODUCTION
    change = StageChange.objects.get(model_version=worse, to_stage=Stage.PRODUCTION)
    assert change.reason == "emergency: gauge data changed"
    gate = change.metrics["gate"]
    assert gate["passed"] is False and gate["forced"] is True
    assert set(gate["failures"]) == {"roc_auc", "recall_high"}
    assert gate["sets"][0]["candidate"]["roc_auc"] < 0.6 < gate["sets"][0]["production"]["roc_auc"]


def test_the_model_page_shows_the_gate_verdict_with_each_stage_change(
    production_model, worse, admin_user, client
):
    model_version_promote(
        model_version=worse, user=admin_user, reason="emergency: gauge data changed", force=True
    )
    client.force_login(admin_user)
    page = client.get(f"/models/{worse.name}/{worse.version}/").content.decode()
    assert "Promotion gate" in page
    assert "FAILED, forced (synthetic held-out: ROC-AUC" in page
    assert "emergency: gauge data changed" in page


def test_forcing_without_a_reason_is_a_400_naming_the_reason(production_model, worse):
    with pytest.raises(ApplicationError) as caught:
        model_version_promote(model_version=worse, user=None, reason=" ", force=True)
    assert caught.value.status_code == 400
    assert caught.value.fields == {"reason": "required when forcing past the gate"}
    assert ModelVersion.objects.get(pk=worse.pk).stage == Stage.CANDIDATE


def test_force_does_not_pass_a_tampered_artifact(production_model):
    candidate = other_good()
    path = Path(candidate.artifact.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError) as caught:
        model_version_promote(model_version=candidate, user=None, reason="x", force=True)
    assert caught.value.code == "integrity"
    production_model.refresh_from_db()
    assert production_model.stage == Stage.PRODUCTION


def test_a_missing_production_artifact_does_not_block_a_good_candidate(production_model):
    Path(production_model.artifact.path).unlink()
    candidate = other_good()
    model_version_promote(model_version=candidate, user=None, reason="production file lost")
    gate = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION).metrics
    assert gate["gate"]["passed"] is True
    assert "production could not be loaded" in gate["gate"]["note"]


def test_rollback_is_not_gated(production_model, worse):
    model_version_promote(model_version=worse, user=None, reason="try it", force=True)
    # Rolling back to the better model is not judged; rolling "forward" again would be.
    restored = model_version_rollback(name=worse.name, user=None, reason="bad alarms")
    assert restored.pk == production_model.pk
    change = StageChange.objects.filter(model_version=production_model).first()
    assert change.to_stage == Stage.PRODUCTION and "gate" not in change.metrics


def test_the_command_refuses_then_forces(production_model, worse):
    with pytest.raises(CommandError, match="Promotion gate"):
        call_command("promote_model", worse.name, str(worse.version), reason="newer")
    call_command("promote_model", worse.name, str(worse.version), reason="known", force=True)
    assert ModelVersion.objects.get(pk=worse.pk).stage == Stage.PRODUCTION


def test_admin_shows_the_gate_error_then_forces_with_the_checkbox(
    client, admin_user, production_model, worse
):
    client.force_login(admin_user)
    form = {"action": "promote", ACTION_CHECKBOX_NAME: [worse.pk]}
    page = client.post(CHANGELIST, form)
    assert b"Force despite the promotion gate" in page.content

    refused = client.post(CHANGELIST, {**form, "apply": "1", "reason": "newer"}, follow=True)
    assert "Promotion gate:" in refused.content.decode()
    assert ModelVersion.objects.get(pk=worse.pk).stage == Stage.CANDIDATE

    forced = {**form, "apply": "1", "reason": "accepted risk", "force": "on"}
    done = client.post(CHANGELIST, forced, follow=True)
    assert f"Now in production: {worse}." in done.content.decode()
    history = client.get(f"{CHANGELIST}{worse.pk}/change/").content.decode()
    assert "FAILED, forced (synthetic held-out: ROC-AUC 0." in history


@pytest.mark.django_db(transaction=True)
def test_two_admins_promoting_at_once_one_wins_the_other_gets_409(register_model):
    """Two threads, each with its own database connection, promote different candidates."""
    production = register_model(promote=True)
    first, second = other_good(), other_good()
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def promote(mv: ModelVersion) -> None:
        try:
            barrier.wait(timeout=30)
            results[mv.pk] = model_version_promote(model_version=mv, user=None, reason="race")
        except ApplicationError as exc:
            results[mv.pk] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=promote, args=(mv,)) for mv in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors = [r for r in results.values() if isinstance(r, ApplicationError)]
    winners = [r for r in results.values() if isinstance(r, ModelVersion)]
    assert len(winners) == 1 and len(errors) == 1, results
    assert (errors[0].status_code, errors[0].code) == (409, "conflict")
    assert list(
        ModelVersion.objects.filter(stage=Stage.PRODUCTION).values_list("pk", flat=True)
    ) == [winners[0].pk]
    production.refresh_from_db()
    assert production.stage == Stage.ARCHIVED


def test_a_candidate_that_failed_its_own_leakage_check_is_refused_until_forced(db, tmp_path):
    path = tmp_path / "threshold.csv"
    synthetic.write_field_records_csv(path, stations=6, years=15, label="threshold")
    args = ["--data", str(path), "--target", "Flood?", "--blank-target", "no"]
    call_command("train_model", *args, "--algorithm", "logistic", stdout=StringIO())
    candidate = ModelVersion.objects.get()

    # Refused with no production version to compare with, too: its own numbers are not real.
    with pytest.raises(
        CommandError, match=r"leakage check.*river_level_m alone reaches ROC-AUC 1\.000"
    ):
        call_command("promote_model", candidate.name, str(candidate.version), reason="try")
    call_command(
        "promote_model", candidate.name, str(candidate.version), reason="known", force=True
    )
    change = StageChange.objects.get(model_version=candidate, to_stage=Stage.PRODUCTION)
    gate = change.metrics["gate"]
    assert gate["forced"] and not gate["passed"]
    assert "river_level_m alone" in gate["failures"]["leakage"]
    assert any("alone separates" in note for note in gate["evaluation_notes"])
    assert change.gate_summary().startswith("FAILED, forced; the candidate failed its own")
