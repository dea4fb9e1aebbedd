"""Retraining from the audit log: the service, the command, and the admin's Celery job."""

from __future__ import annotations

import copy
import hashlib
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, Stage, StageChange
from mlcore.services import model_version_promote, model_version_register
from modelops.models import RetrainJob, RetrainStatus
from modelops.retraining import model_version_retrain
from modelops.tasks import retrain_job_run_task
from predictions.models import Prediction
from predictions.services import outcome_create, prediction_create
from predictions.tests.test_tasks import start_worker, stop, wait_for, worker_env

JOBS = "/admin/modelops/retrainjob/"
NAME = django_settings.FLOODSITE_MODEL_NAME


def record(user, n: int, *, seed: int = 31, flooded: bool | None = None) -> list[str]:
    """n predictions through the service, each with an outcome; returns their ids."""
    from mlcore.engine import synthetic

    rows = synthetic.generate(n, seed=seed)
    ids = []
    for _, row in rows.iterrows():
        inputs = {name: float(row[name]) for name in synthetic.FEATURE_NAMES}
        prediction = prediction_create(user=user, source="api", inputs=inputs)
        happened = bool(row["flooded"]) if flooded is None else flooded
        outcome_create(prediction=prediction, user=user, flooded=happened)
        ids.append(str(prediction.pk))
    return ids


def _broker_empty() -> None:
    if django_settings.REDIS_URL:
        import redis

        redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    for folder in ("queue", "processed"):
        for message in (django_settings.CELERY_BROKER_DIR / folder).glob("*"):
            message.unlink(missing_ok=True)


@pytest.fixture
def empty_broker():
    """No leftover message reaches this test's worker, and none of this test's reaches the
    next one (most tests here queue a job and run it in-process)."""
    _broker_empty()
    yield
    _broker_empty()


def test_no_outcomes_is_a_400(production_model, user):
    defaults = {f["name"]: f["default"] for f in production_model.manifest["features"]}
    prediction_create(user=user, source="web", inputs=defaults)  # no outcome recorded
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME)
    assert (caught.value.status_code, caught.value.code) == (400, "no_outcomes")
    assert caught.value.fields == {"outcomes": "none recorded"}


def test_one_class_is_a_400_naming_the_counts(production_model, user):
    record(user, 12, flooded=False)
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME)
    assert (caught.value.status_code, caught.value.code) == (400, "one_class")
    assert "All 12 recorded outcomes are non-floods (0 flooded, 12 not flooded)" in str(
        caught.value.message
    )
    assert ModelVersion.objects.count() == 1


def test_too_few_outcomes_for_the_asked_minimum_is_a_400(production_model, user):
    record(user, 40)
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME, min_outcomes=100)
    assert caught.value.code == "too_few_outcomes"
    assert caught.value.fields == {"min_outcomes": "40 available"}


@pytest.mark.slow  # trains a candidate
def test_retraining_registers_a_candidate_with_fingerprint_ids_and_comparison(
    production_model, user, admin_user
):
    ids = record(user, 150)
    steps: list[tuple[str, int]] = []
    mv = model_version_retrain(
        name=NAME, user=admin_user, progress=lambda m, p: steps.append((m, p))
    )
    assert (mv.stage, mv.version, mv.created_by) == (Stage.CANDIDATE, 2, admin_user)
    production_model.refresh_from_db()
    assert production_model.stage == Stage.PRODUCTION
    fingerprint = mv.manifest["data_fingerprint"]
    assert fingerprint["rows"] == fingerprint["audit_rows"] == 150
    assert fingerprint["original"] is None and fingerprint["original_rows"] == 0
    assert len(fingerprint["sha256"]) == 64
    assert fingerprint["prediction_ids"] == {"count": 150, "ids": sorted(ids)}
    comparison = mv.metrics["comparison"]
    assert comparison["production"] == str(production_model)
    [held_out] = comparison["sets"]
    assert held_out["name"] == "retraining held-out" and held_out["n"] == 30
    assert {"roc_auc", "brier", "recall_high"} <= set(held_out["candidate"])
    assert {"roc_auc", "brier", "recall_high"} <= set(held_out["production"])
    assert "passed" in comparison and "reasons" in comparison
    percents = [p for _, p in steps]
    assert percents == sorted(percents) and percents[-1] == 100
    assert steps[-1][0].startswith(f"registered {mv} as a candidate")

    # The same outcomes give the same fingerprint: it identifies the data, not the run.
    again = model_version_retrain(name=NAME)
    assert again.manifest["data_fingerprint"]["sha256"] == fingerprint["sha256"]


@pytest.mark.slow  # trains a candidate
def test_many_prediction_ids_go_to_a_pinned_file_next_to_the_artifact(production_model, user):
    ids = record(user, 230)
    mv = model_version_retrain(name=NAME, seed=2)
    entry = mv.manifest["data_fingerprint"]["prediction_ids"]
    assert entry["count"] == 230 and "ids" not in entry
    path = Path(django_settings.MEDIA_ROOT) / entry["file"]
    assert path.parent == Path(mv.artifact.path).parent
    content = path.read_bytes()
    assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert content.decode().split() == sorted(ids)


@pytest.mark.slow  # trains a candidate
def test_with_the_original_data_the_generator_rows_are_added(production_model, user):
    record(user, 60)
    mv = model_version_retrain(name=NAME, include_original=True)
    fingerprint = mv.manifest["data_fingerprint"]
    assert fingerprint["original"] == "synthetic(n_rows=6000, seed=7)"
    assert (fingerprint["audit_rows"], fingerprint["original_rows"]) == (60, 6_000)
    assert fingerprint["rows"] == 6_060
    assert mv.metrics["comparison"]["sets"][0]["n"] == 1_212


def test_the_original_data_of_a_csv_model_cannot_be_rebuilt(trained_default, db, user):
    manifest = copy.deepcopy(trained_default.manifest)
    manifest.data_fingerprint = {"source": "gauges-2023.csv", "rows": 6000}
    model_version_register(
        pipeline=trained_default.pipeline,
        manifest=manifest,
        x_check=trained_default.x_test[:100],
        promote=True,
        reason="from a CSV",
    )
    record(user, 30)
    with pytest.raises(ApplicationError) as caught:
        model_version_retrain(name=NAME, include_original=True)
    assert caught.value.code == "original_unavailable"
    assert "gauges-2023.csv" in caught.value.message
    assert caught.value.fields == {"include_original": "original training data unavailable"}


@pytest.mark.slow  # trains a candidate
def test_the_gate_leaves_out_the_outcomes_a_candidate_was_trained_on(
    production_model, user, settings
):
    settings.GATE_MIN_OUTCOMES = 5
    record(user, 150)
    mv = model_version_retrain(name=NAME, include_original=True)
    model_version_promote(model_version=mv, user=None, reason="retrained", force=True)
    gate = StageChange.objects.get(model_version=mv, to_stage=Stage.PRODUCTION).metrics["gate"]
    # Every outcome trained the candidate, so only the synthetic rows are fair to both.
    assert [item["name"] for item in gate["sets"]] == ["synthetic held-out"]


@pytest.mark.slow  # trains a candidate
def test_the_command_prints_progress_and_the_result(production_model, user):
    record(user, 80)
    out = StringIO()
    call_command("retrain", "--with-original", "--min-outcomes", "50", stdout=out)
    text = out.getvalue()
    assert "[  5%] reading audit rows with outcomes" in text
    assert "[100%] registered flood-risk v2 as a candidate" in text
    assert "flood-risk v2 registered as a candidate from audit log, 80 outcomes + synthetic" in text
    assert "manage.py promote_model flood-risk 2" in text


def test_the_command_explains_a_refusal(production_model):
    with pytest.raises(CommandError, match=r"No outcomes are recorded .* none recorded"):
        call_command("retrain", stdout=StringIO())


@pytest.mark.slow  # trains a candidate
def test_admin_queues_a_job_that_reports_progress_and_links_the_candidate(
    client, admin_user, production_model, user, empty_broker
):
    # Enough outcomes that the held-out fifth has the 5 rows of each class training requires.
    record(user, 150)
    client.force_login(admin_user)
    form = client.get(f"{JOBS}add/?name={NAME}")
    assert b"Retrain from the audit log" in form.content and b"min_outcomes" in form.content
    response = client.post(f"{JOBS}add/", {"name": NAME, "min_outcomes": "10"})
    job = RetrainJob.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{job.pk}/change/")
    assert (job.status, job.created_by) == (RetrainStatus.QUEUED, admin_user)
    waiting = client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert 'http-equiv="refresh"' in waiting and "waiting for a worker" in waiting

    retrain_job_run_task(job.pk)  # what the worker runs for the queued message

    job.refresh_from_db()
    assert (job.status, job.percent) == (RetrainStatus.SUCCEEDED, 100)
    assert job.model_version.stage == Stage.CANDIDATE and job.started_at and job.finished_at
    done = client.get(f"{JOBS}{job.pk}/change/").content.decode()
    assert 'http-equiv="refresh"' not in done
    assert '<progress max="100" value="100">' in done and str(job.model_version) in done
    assert "Retrain from the audit log" in client.get(JOBS).content.decode()


def test_a_job_that_cannot_train_says_why(client, admin_user, production_model, empty_broker):
    client.force_login(admin_user)
    client.post(f"{JOBS}add/", {"name": NAME, "min_outcomes": "0"})
    job = RetrainJob.objects.get()
    retrain_job_run_task(job.pk)
    job.refresh_from_db()
    assert job.status == RetrainStatus.FAILED and job.model_version is None
    assert job.error.startswith("No outcomes are recorded")
    assert job.error in client.get(f"{JOBS}{job.pk}/change/").content.decode()
    retrain_job_run_task(job.pk)  # a redelivered message leaves an ended job alone
    job.refresh_from_db()
    assert job.status == RetrainStatus.FAILED


def test_admin_refuses_bad_input_and_a_missing_production_model(client, admin_user, db):
    client.force_login(admin_user)
    bad = client.post(f"{JOBS}add/", {"name": NAME, "min_outcomes": "-1"})
    assert bad.status_code == 200 and b"greater than or equal to 0" in bad.content
    missing = client.post(f"{JOBS}add/", {"name": "no-such-model", "min_outcomes": "0"})
    assert b"No production version of model" in missing.content
    assert not RetrainJob.objects.exists()


def test_a_broker_that_is_down_leaves_no_job_and_says_so(
    client, admin_user, production_model, settings
):
    from floodsite.celery import app

    # Point the app at a broker nobody listens on (port 1), then put the real one back.
    previous = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    app._pool = app.amqp._producer_pool = None
    try:
        client.force_login(admin_user)
        page = client.post(f"{JOBS}add/", {"name": NAME, "min_outcomes": "0"}, follow=True)
    finally:
        app.conf.broker_url, app._pool, app.amqp._producer_pool = previous
    assert "The task queue is unavailable; nothing was queued." in page.content.decode()
    assert not RetrainJob.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_job_queued_from_admin(
    client, admin_user, production_model, user, tmp_path, settings, empty_broker
):
    record(user, 60)
    client.force_login(admin_user)
    log = tmp_path / "worker.log"
    worker = start_worker(worker_env(Path(settings.MEDIA_ROOT)), log)
    try:
        client.post(f"{JOBS}add/", {"name": NAME, "include_original": "on", "min_outcomes": "0"})
        job = RetrainJob.objects.get()
        wait_for(
            lambda: RetrainJob.objects.get(pk=job.pk).finished, timeout=180, what="the job", log=log
        )
    finally:
        stop(worker)
    job.refresh_from_db()
    assert job.status == RetrainStatus.SUCCEEDED, job.error
    assert job.model_version.manifest["data_fingerprint"]["original_rows"] == 6_000
    assert Prediction.objects.count() == 60
