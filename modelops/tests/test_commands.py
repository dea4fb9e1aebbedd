"""The run_monitoring command: a check on demand, and a dry run that stores nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from modelops.models import Alert, MonitoringReport


def run(*args: str) -> str:
    out = StringIO()
    call_command("run_monitoring", *args, stdout=out)
    return out.getvalue()


def test_run_monitoring_stores_a_report_and_raises_alerts(production_model):
    output = run("--window-minutes", "30")
    report = MonitoringReport.objects.get()
    assert f"Monitoring report {report.pk} (30 min): 1 new" in output
    assert (report.window_end - report.window_start).total_seconds() == 30 * 60
    assert Alert.objects.get().kind == "no_traffic"


def test_dry_run_prints_the_metrics_and_stores_nothing(production_model):
    output = run("--dry-run")
    assert '"drift"' in output and '"accuracy"' in output
    assert "Dry run: 1 finding(s); nothing was stored." in output
    assert not MonitoringReport.objects.exists() and not Alert.objects.exists()


def test_a_bad_window_is_a_command_error(db):
    with pytest.raises(CommandError, match="at least one minute"):
        run("--window-minutes", "-5")
