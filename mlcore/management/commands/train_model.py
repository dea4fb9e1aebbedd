"""manage.py train_model: train a model from a CSV or the synthetic generator and register it."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from mlcore.models import ArtifactFormat
from mlcore.services import model_version_train


class Command(BaseCommand):
    help = (
        "Train a flood-risk model and register it as a candidate (or production with --promote). "
        "Without --data it trains on the documented synthetic generator; with no production "
        "version yet, that first model is promoted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", help="CSV file with one row per observation.")
        parser.add_argument("--target", default="flooded", help="Label column (default flooded).")
        parser.add_argument(
            "--features", help="Comma-separated feature columns (default: every usable column)."
        )
        parser.add_argument(
            "--algorithm",
            default="hgb",
            choices=["hgb", "logistic", "random_forest"],
            help="hgb = HistGradientBoosting (default).",
        )
        parser.add_argument(
            "--blank-target",
            default="drop",
            choices=["drop", "refuse"],
            help="What to do with rows whose label is blank (default drop, and say how many).",
        )
        parser.add_argument("--name", default=None, help="Model name (FLOODSITE_MODEL_NAME).")
        parser.add_argument("--rows", type=int, default=60_000, help="Synthetic rows.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--format", default=ArtifactFormat.JOBLIB, choices=ArtifactFormat.values
        )
        parser.add_argument("--notes", default="")
        parser.add_argument("--promote", action="store_true", help="Make it production now.")

    def handle(self, *args, **opts) -> None:
        from mlcore.models import ModelVersion, Stage

        name = opts["name"] or settings.FLOODSITE_MODEL_NAME
        promote = opts["promote"]
        if opts["data"] is None and not promote:
            # The default model of a fresh installation goes straight to production.
            promote = not ModelVersion.objects.filter(name=name, stage=Stage.PRODUCTION).exists()
        features = [f.strip() for f in opts["features"].split(",")] if opts["features"] else None

        def progress(message: str) -> None:
            if opts["verbosity"] >= 1:
                self.stdout.write(f"  {message}")

        try:
            mv = model_version_train(
                name=name,
                data_path=opts["data"],
                target=opts["target"].strip(),
                features=features,
                algorithm=opts["algorithm"],
                blank_target=opts["blank_target"],
                synthetic_rows=opts["rows"],
                seed=opts["seed"],
                fmt=opts["format"],
                notes=opts["notes"],
                promote=promote,
                progress=progress,
            )
        except ApplicationError as exc:
            fields = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
            raise CommandError(exc.message + (f" ({fields})" if fields else "")) from exc
        backend = "onnx" if mv.onnx_artifact else "scikit-learn"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {mv} as {mv.stage} (sha256 {mv.sha256[:12]}…, fast path: {backend})."
            )
        )
