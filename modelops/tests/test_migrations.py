"""Moving MonitoringReport, Alert and RetrainJob to modelops keeps their tables, rows and
permissions: a database at the old head is migrated forward and read through the new models."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from mlcore.models import ModelVersion
from modelops.models import Alert, MonitoringReport, RetrainJob, RetrainStatus

# The last migrations before the move, and modelops not yet there.
OLD_HEAD = [("predictions", "0009_outcome_add_outcome_any"), ("mlcore", "0003_retrainjob")]


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()  # what is applied now
    return executor


@pytest.mark.django_db(transaction=True)
def test_rows_and_permissions_survive_the_move_to_modelops():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    permission = Permission.objects.get(content_type__app_label="modelops", codename="view_alert")
    try:
        executor = _migrate([*OLD_HEAD, ("modelops", None)])
        old = executor.loader.project_state(OLD_HEAD).apps
        assert "modelops" not in {model._meta.app_label for model in old.get_models()}
        # Back at the old head the permission is predictions' again, under the same id.
        permission.refresh_from_db()
        assert permission.content_type.app_label == "predictions"

        now = timezone.now()
        version = old.get_model("mlcore", "ModelVersion").objects.create(
            name="moved", version=1, artifact="models/moved/a.skops", sha256="0" * 64,
            format="skops", manifest={"features": []},
        )  # fmt: skip
        report = old.get_model("predictions", "MonitoringReport").objects.create(
            created_at=now, window_start=now, window_end=now, model_version_id=version.pk,
            metrics={"traffic": {"total": 3}},
        )  # fmt: skip
        alert = old.get_model("predictions", "Alert").objects.create(
            kind="latency", subject="web and API p95", message="slow", report_id=report.pk
        )
        job = old.get_model("mlcore", "RetrainJob").objects.create(
            name="moved", status="succeeded", percent=100, model_version_id=version.pk
        )
    finally:
        _migrate(latest)

    permission.refresh_from_db()
    assert permission.content_type.app_label == "modelops"
    moved_report = MonitoringReport.objects.get(pk=report.pk)
    assert moved_report.metrics == {"traffic": {"total": 3}}
    assert moved_report.model_version == ModelVersion.objects.get(pk=version.pk)
    moved_alert = Alert.objects.get(pk=alert.pk)
    assert (moved_alert.subject, moved_alert.report_id) == ("web and API p95", report.pk)
    moved_job = RetrainJob.objects.get(pk=job.pk)
    assert moved_job.status == RetrainStatus.SUCCEEDED and moved_job.model_version_id == version.pk
    # The tables did not move: the new models read the old ones.
    tables = connection.introspection.table_names()
    assert {"predictions_monitoringreport", "predictions_alert", "mlcore_retrainjob"} <= set(tables)
