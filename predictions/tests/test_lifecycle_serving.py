"""Shadow and canary serving: who answers, what the audit row records, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from accounts.models import User
from floodsite.exceptions import ApplicationError
from mlcore import selectors
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.selectors import canary_bucket, serving_set_get
from mlcore.services import (
    model_version_canary_start,
    model_version_canary_stop,
    model_version_promote,
    model_version_shadow_start,
    model_version_shadow_stop,
)
from predictions.models import Prediction, Source
from predictions.services import prediction_create

URL = "/api/v1/predictions/"
CHANGELIST = "/admin/mlcore/modelversion/"


def _stages(*versions: ModelVersion) -> list[str]:
    for mv in versions:
        mv.refresh_from_db()
    return [mv.stage for mv in versions]


# --- shadow ---------------------------------------------------------------------------------


def test_a_shadow_answers_on_the_audit_row_and_never_in_the_response(
    api, typical_inputs, production_model, register_model, admin_user
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")

    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201, response.content
    assert "shadow" not in response.content.decode()
    body = response.json()
    assert body["model"]["version"] == production_model.version

    row = Prediction.objects.get(pk=body["id"])
    assert row.model_version == production_model
    assert row.shadow_model_version == candidate
    # Same validated values, and the candidate here is the same trained pipeline.
    assert row.shadow_probability == pytest.approx(row.probability, abs=1e-12)
    assert row.shadow_risk_band == row.risk_band
    assert row.shadow_error == ""

    many = api.post(
        URL,
        {"instances": [typical_inputs, {**typical_inputs, "rainfall_24h_mm": 400}]},
        format="json",
    )
    assert many.status_code == 201
    assert "shadow" not in many.content.decode()
    rows = Prediction.objects.filter(pk__in=[p["id"] for p in many.json()["predictions"]])
    assert {r.shadow_model_version_id for r in rows} == {candidate.pk}
    assert all(r.shadow_probability == pytest.approx(r.probability) for r in rows)


def test_shadow_start_and_stop_are_recorded_and_stop_ends_shadow_scoring(
    api, typical_inputs, production_model, register_model, admin_user
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")
    started = StageChange.objects.filter(model_version=candidate).first()
    assert (started.from_stage, started.to_stage) == (Stage.CANDIDATE, Stage.SHADOW)
    assert (started.changed_by, started.reason) == (admin_user, "watch it")
    assert started.metrics["roc_auc"] == candidate.metrics["roc_auc"]

    model_version_shadow_stop(model_version=candidate, user=admin_user, reason="seen enough")
    assert _stages(candidate) == [Stage.CANDIDATE]
    stopped = StageChange.objects.filter(model_version=candidate).first()
    assert stopped.to_stage == Stage.CANDIDATE and "seen enough" in stopped.reason
    body = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    assert Prediction.objects.get(pk=body["id"]).shadow_model_version is None


def test_a_shadow_whose_file_was_deleted_after_start_leaves_production_answering(
    api, typical_inputs, production_model, register_model, admin_user
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")
    Path(candidate.artifact.path).unlink()

    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201, response.content
    row = Prediction.objects.get(pk=response.json()["id"])
    assert row.model_version == production_model
    assert row.shadow_model_version == candidate
    assert row.shadow_probability is None
    assert str(candidate) in row.shadow_error and "does not exist" in row.shadow_error


def test_a_shadow_whose_file_comes_back_is_scored_again(
    api, typical_inputs, production_model, register_model, admin_user, settings, monkeypatch
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")
    path = Path(candidate.artifact.path)
    saved = path.read_bytes()
    path.unlink()
    first = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    assert Prediction.objects.get(pk=first["id"]).shadow_error

    path.write_bytes(saved)  # restored from backup
    settings.FLOODSITE_MODEL_RECHECK_SECONDS = 0
    monkeypatch.setattr(selectors, "FAILED_LOAD_RETRY_SECONDS", 0)
    again = api.post(URL, {"inputs": typical_inputs}, format="json").json()
    row = Prediction.objects.get(pk=again["id"])
    assert row.shadow_error == "" and row.shadow_probability is not None


def test_a_shadow_corrupted_after_start_is_refused_by_a_new_process(
    api, typical_inputs, production_model, register_model, admin_user
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")
    assert api.post(URL, {"inputs": typical_inputs}, format="json").status_code == 201
    path = Path(candidate.artifact.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    selectors.predictor_cache_clear(name=candidate.name)  # as a freshly started worker

    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201
    row = Prediction.objects.get(pk=response.json()["id"])
    assert row.shadow_probability is None
    assert "SHA-256" in row.shadow_error and str(candidate) in row.shadow_error


def test_a_shadow_that_raises_while_scoring_is_logged_on_the_row(
    api, typical_inputs, production_model, register_model, admin_user
):
    candidate = register_model()
    model_version_shadow_start(model_version=candidate, user=admin_user, reason="watch it")
    # The shadow's manifest now describes one input fewer than the values it is given.
    manifest = dict(candidate.manifest)
    manifest["features"] = manifest["features"][:-1]
    ModelVersion.objects.filter(pk=candidate.pk).update(manifest=manifest)
    selectors.predictor_cache_clear(name=candidate.name)

    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201
    row = Prediction.objects.get(pk=response.json()["id"])
    assert row.model_version == production_model
    assert row.shadow_probability is None
    assert row.shadow_error.startswith("SchemaError")


# --- canary ---------------------------------------------------------------------------------


def test_a_canary_answers_its_share_of_users_sticky_and_recorded(
    production_model, register_model, admin_user, typical_inputs
):
    canary = register_model()
    model_version_canary_start(model_version=canary, percent=30, user=admin_user, reason="try")
    assert canary.canary_percent == 30 and canary.stage == Stage.CANARY
    User.objects.bulk_create([User(username=f"field{n}") for n in range(200)])
    users = list(User.objects.filter(username__startswith="field"))

    for user in users:
        prediction_create(user=user, source=Source.API, inputs=typical_inputs)
    on_canary = set(
        Prediction.objects.filter(model_version=canary).values_list("user_id", flat=True)
    )
    expected = {u.pk for u in users if canary_bucket(user_id=u.pk, name=canary.name) < 30}
    assert on_canary == expected
    assert 40 <= len(on_canary) <= 80  # about 30% of 200
    assert set(Prediction.objects.values_list("model_version_id", flat=True)) == {
        canary.pk,
        production_model.pk,
    }

    # Sticky: the same users get the same model every time.
    for user in users[:20]:
        for _ in range(3):
            row = prediction_create(user=user, source=Source.WEB, inputs=typical_inputs)
            assert (row.model_version_id == canary.pk) == (user.pk in on_canary)


def test_raising_the_canary_share_keeps_its_users_and_adds_more(
    production_model, register_model, admin_user
):
    canary = register_model()
    model_version_canary_start(model_version=canary, percent=10, user=admin_user, reason="start")
    model_version_canary_start(model_version=canary, percent=50, user=admin_user, reason="more")
    assert canary.canary_percent == 50
    change = StageChange.objects.filter(model_version=canary).first()
    assert (change.from_stage, change.to_stage) == (Stage.CANARY, Stage.CANARY)
    assert "50%" in change.reason
    serving = serving_set_get(name=canary.name)
    assert serving.canary_percent == 50
    # canary_bucket < 10 implies < 50: nobody leaves the canary when its share grows.
    assert all(
        serving.answering(user_id=uid).model_version_id == canary.pk
        for uid in range(1, 500)
        if canary_bucket(user_id=uid, name=canary.name) < 10
    )


def test_canary_stop_is_the_rollback_in_one_action(
    production_model, register_model, admin_user, typical_inputs
):
    canary = register_model()
    model_version_canary_start(model_version=canary, percent=99, user=admin_user, reason="try")
    User.objects.bulk_create([User(username=f"field{n}") for n in range(30)])
    users = list(User.objects.filter(username__startswith="field"))
    answered = {
        prediction_create(user=u, source="api", inputs=typical_inputs).model_version_id
        for u in users
    }
    assert canary.pk in answered

    model_version_canary_stop(model_version=canary, user=admin_user, reason="alarms")
    canary.refresh_from_db()
    assert (canary.stage, canary.canary_percent) == (Stage.CANDIDATE, 0)
    change = StageChange.objects.filter(model_version=canary).first()
    assert change.changed_by == admin_user and "alarms" in change.reason
    answered = {
        prediction_create(user=u, source="api", inputs=typical_inputs).model_version_id
        for u in users
    }
    assert answered == {production_model.pk}


def test_promoting_a_canary_goes_through_the_normal_promotion(
    production_model, register_model, admin_user
):
    canary = register_model()
    model_version_canary_start(model_version=canary, percent=20, user=admin_user, reason="try")
    model_version_promote(model_version=canary, user=admin_user, reason="it held up")
    assert _stages(canary, production_model) == [Stage.PRODUCTION, Stage.ARCHIVED]
    assert canary.canary_percent == 0
    serving = serving_set_get(name=canary.name)
    assert serving.production.model_version_id == canary.pk and serving.canary is None


@pytest.mark.parametrize("percent", [0, 100, -5, 250, "30", 12.5, True, None])
def test_a_canary_share_outside_1_to_99_is_a_400_naming_percent(
    production_model, register_model, admin_user, percent
):
    candidate = register_model()
    with pytest.raises(ApplicationError) as exc:
        model_version_canary_start(
            model_version=candidate, percent=percent, user=admin_user, reason="try"
        )
    assert exc.value.status_code == 400
    assert "percent" in exc.value.fields
    assert _stages(candidate) == [Stage.CANDIDATE]


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["shadow", "canary"])
def test_production_and_archived_versions_cannot_go_into_shadow_or_canary(
    production_model, register_model, admin_user, start
):
    def begin(mv):
        if start == "shadow":
            return model_version_shadow_start(model_version=mv, user=admin_user, reason="x")
        return model_version_canary_start(model_version=mv, percent=10, user=admin_user, reason="x")

    with pytest.raises(ApplicationError) as exc:
        begin(production_model)
    assert exc.value.status_code == 409 and exc.value.code == "wrong_stage"
    assert f"{production_model} is production" in exc.value.message

    archived = register_model()
    ModelVersion.objects.filter(pk=archived.pk).update(stage=Stage.ARCHIVED)
    archived.refresh_from_db()
    with pytest.raises(ApplicationError) as exc:
        begin(archived)
    assert exc.value.status_code == 409
    assert _stages(production_model, archived) == [Stage.PRODUCTION, Stage.ARCHIVED]


def test_a_tampered_candidate_is_refused_and_production_keeps_serving(
    api, typical_inputs, production_model, register_model, admin_user
):
    tampered = register_model()
    with open(tampered.artifact.path, "ab") as fh:
        fh.write(b"x")
    for start in (
        lambda: model_version_shadow_start(model_version=tampered, user=admin_user, reason="x"),
        lambda: model_version_canary_start(
            model_version=tampered, percent=50, user=admin_user, reason="x"
        ),
    ):
        with pytest.raises(ApplicationError) as exc:
            start()
        assert (exc.value.status_code, exc.value.code) == (409, "integrity")
        assert str(tampered) in exc.value.message
    assert _stages(tampered) == [Stage.CANDIDATE]
    response = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert response.status_code == 201
    assert Prediction.objects.get(pk=response.json()["id"]).shadow_model_version is None


def test_a_missing_candidate_file_is_refused(production_model, register_model, admin_user):
    missing = register_model()
    Path(missing.artifact.path).unlink()
    with pytest.raises(ApplicationError) as exc:
        model_version_shadow_start(model_version=missing, user=admin_user, reason="x")
    assert (exc.value.status_code, exc.value.code) == (409, "artifact_missing")


def test_other_features_than_production_are_a_400_naming_them(
    production_model, register_model, admin_user
):
    other = register_model()
    manifest = dict(other.manifest)
    features = [dict(f) for f in manifest["features"]]
    dropped = features.pop(0)["name"]
    features[0]["name"] = "tide_height_m"
    manifest["features"] = features
    ModelVersion.objects.filter(pk=other.pk).update(manifest=manifest)
    other.refresh_from_db()
    with pytest.raises(ApplicationError) as exc:
        model_version_canary_start(model_version=other, percent=10, user=admin_user, reason="x")
    assert exc.value.status_code == 400 and exc.value.code == "feature_mismatch"
    assert dropped in exc.value.fields and "tide_height_m" in exc.value.fields
    assert dropped in exc.value.message and "tide_height_m" in exc.value.message


def test_one_shadow_at_a_time_and_a_reason_is_required(
    production_model, register_model, admin_user
):
    first, second = register_model(), register_model()
    with pytest.raises(ApplicationError) as exc:
        model_version_shadow_start(model_version=first, user=admin_user, reason="  ")
    assert exc.value.fields == {"reason": "required"}
    model_version_shadow_start(model_version=first, user=admin_user, reason="first")
    with pytest.raises(ApplicationError) as exc:
        model_version_shadow_start(model_version=second, user=admin_user, reason="second")
    assert exc.value.status_code == 409 and str(first) in exc.value.message
    with pytest.raises(ApplicationError) as exc:
        model_version_canary_stop(model_version=first, user=admin_user, reason="not a canary")
    assert exc.value.status_code == 409 and "nothing to stop" in exc.value.message


# --- the per-process serving set ------------------------------------------------------------


def test_the_serving_set_costs_no_query_between_rechecks(
    production_model, register_model, admin_user, django_assert_num_queries
):
    shadow, canary = register_model(), register_model()
    model_version_shadow_start(model_version=shadow, user=admin_user, reason="s")
    model_version_canary_start(model_version=canary, percent=25, user=admin_user, reason="c")
    first = serving_set_get(name=production_model.name)
    assert first.shadow.model_version_id == shadow.pk
    assert (first.canary.model_version_id, first.canary_percent) == (canary.pk, 25)
    with django_assert_num_queries(0):
        assert serving_set_get(name=production_model.name) is first


def test_the_serving_set_rechecks_with_one_query_and_reuses_loaded_models(
    production_model, register_model, admin_user, settings, django_assert_num_queries
):
    shadow = register_model()
    before = serving_set_get(name=production_model.name)
    ModelVersion.objects.filter(pk=shadow.pk).update(stage=Stage.SHADOW)  # another process
    settings.FLOODSITE_MODEL_RECHECK_SECONDS = 0
    after = serving_set_get(name=production_model.name)
    assert after.shadow.model_version_id == shadow.pk
    assert after.production is before.production  # not read from disk again
    with django_assert_num_queries(1):
        assert serving_set_get(name=production_model.name) is after


# --- admin ----------------------------------------------------------------------------------


def test_admin_actions_start_and_roll_back_a_canary_and_a_shadow(
    client, admin_user, production_model, register_model
):
    canary, shadow = register_model(), register_model()
    client.force_login(admin_user)

    form = {"action": "canary_start", ACTION_CHECKBOX_NAME: [canary.pk]}
    page = client.post(CHANGELIST, form)
    assert page.status_code == 200 and b"Share of users" in page.content
    refused = client.post(CHANGELIST, {**form, "apply": "1", "reason": "x", "percent": "150"})
    assert refused.status_code == 200 and b"less than or equal to 99" in refused.content
    assert _stages(canary) == [Stage.CANDIDATE]
    done = client.post(
        CHANGELIST, {**form, "apply": "1", "reason": "gradual", "percent": "15"}, follow=True
    )
    assert f"Canary: {canary} answers 15% of users." in done.content.decode()
    assert _stages(canary) == [Stage.CANARY]

    form = {"action": "shadow_start", ACTION_CHECKBOX_NAME: [shadow.pk], "apply": "1"}
    done = client.post(CHANGELIST, {**form, "reason": "listen"}, follow=True)
    assert f"In shadow: {shadow}." in done.content.decode()

    form = {"action": "canary_stop", ACTION_CHECKBOX_NAME: [canary.pk], "apply": "1"}
    done = client.post(CHANGELIST, {**form, "reason": "alarms"}, follow=True)
    assert "Canary rolled back" in done.content.decode()
    form = {"action": "shadow_stop", ACTION_CHECKBOX_NAME: [shadow.pk], "apply": "1"}
    client.post(CHANGELIST, {**form, "reason": "done"}, follow=True)
    assert _stages(canary, shadow) == [Stage.CANDIDATE, Stage.CANDIDATE]

    form = {"action": "shadow_start", ACTION_CHECKBOX_NAME: [production_model.pk], "apply": "1"}
    done = client.post(CHANGELIST, {**form, "reason": "oops"}, follow=True)
    assert '<li class="error">' in done.content.decode()
    assert _stages(production_model) == [Stage.PRODUCTION]
