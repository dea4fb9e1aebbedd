"""run_monitoring: one monitoring check now, for cron users and for tests.

The scheduled check (Celery beat, every MONITOR_INTERVAL_MINUTES) does the same thing; this
command is for sites that run cron instead of beat, and for looking at the numbers by hand.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from modelops.checks import monitoring_evaluate
from modelops.services import monitoring_report_create


class Command(BaseCommand):
    help = (
        "Check traffic, latency, batch errors, accuracy and drift of the production model over "
        "a window, store a monitoring report and raise, repeat or resolve alerts "
        "(--dry-run prints the result and stores nothing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--window-minutes",
            type=int,
            default=None,
            help="How far back to look (default MONITOR_WINDOW_MINUTES).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Compute and print the metrics and findings; store no report, raise no alert.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        window = options["window_minutes"] or settings.MONITOR_WINDOW_MINUTES
        try:
            if options["dry_run"]:
                result = monitoring_evaluate(window_minutes=window)
                self.stdout.write(json.dumps(result.metrics, indent=2, default=str))
                self.stdout.write(
                    f"Dry run: {len(result.findings)} finding(s); nothing was stored."
                )
                return
            report = monitoring_report_create(window_minutes=window)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        alerts = report.metrics["alerts"]
        if options["verbosity"] >= 2:
            self.stdout.write(json.dumps(report.metrics, indent=2, default=str))
        self.stdout.write(
            self.style.SUCCESS(
                f"Monitoring report {report.pk} ({window} min): {len(alerts['new'])} new, "
                f"{len(alerts['repeated'])} repeated, {len(alerts['resolved'])} resolved alert(s)."
            )
        )
