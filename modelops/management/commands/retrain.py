"""manage.py retrain: train a candidate on the audit log's outcomes, compared with production."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from modelops.retraining import model_version_retrain


class Command(BaseCommand):
    help = (
        "Build a training set from predictions with recorded outcomes (optionally plus the "
        "production model's original training data), train, compare with production on the "
        "same held-out rows and register the result as a candidate. Nothing is promoted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=None, help="Model name (FLOODSITE_MODEL_NAME).")
        parser.add_argument(
            "--with-original",
            action="store_true",
            help=(
                "Add the production model's original training data: the CSV kept beside it "
                "(verified by SHA-256) or the synthetic generator's rows."
            ),
        )
        parser.add_argument(
            "--min-outcomes",
            type=int,
            default=0,
            help="Refuse to train on fewer recorded outcomes than this (default 0).",
        )
        parser.add_argument("--seed", type=int, default=0, help="Split and training seed.")

    def handle(self, *args, **opts) -> None:
        name = opts["name"] or settings.FLOODSITE_MODEL_NAME

        def progress(message: str, percent: int) -> None:
            if opts["verbosity"] >= 1:
                self.stdout.write(f"  [{percent:3d}%] {message}")

        try:
            mv = model_version_retrain(
                name=name,
                include_original=opts["with_original"],
                min_outcomes=opts["min_outcomes"],
                seed=opts["seed"],
                progress=progress,
            )
        except ApplicationError as exc:
            fields = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
            raise CommandError(exc.message + (f" ({fields})" if fields else "")) from exc
        comparison = mv.metrics.get("comparison", {})
        verdict = "would pass" if comparison.get("passed") else "would fail"
        self.stdout.write(
            self.style.SUCCESS(
                f"{mv} registered as a candidate from {mv.manifest['data_fingerprint']['source']} "
                f"(data SHA-256 {mv.manifest['data_fingerprint']['sha256'][:12]}...); on the "
                f"held-out split the promotion gate {verdict}."
            )
        )
        for reason in comparison.get("reasons", []):
            self.stdout.write(f"  {reason}")
        self.stdout.write(
            f"Promote with: manage.py promote_model {mv.name} {mv.version} --reason '...'"
        )
