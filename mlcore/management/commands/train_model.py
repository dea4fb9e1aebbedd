"""manage.py train_model: train a model from a CSV or the synthetic generator and register it.

Before fitting it prints the label policy (class counts before and after) and a table of every
column's role; after, how the test rows were chosen, the metrics with 95 % intervals, the
leakage check and every warning. All of it is also stored in the manifest.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from mlcore.engine.assessment import describe_evaluation
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
            "--exclude", help="Comma-separated columns never to use, whatever their role."
        )
        parser.add_argument(
            "--blank-target",
            default="refuse",
            choices=["no", "yes", "drop", "refuse"],
            help=(
                "What a blank label means: no (no flood), yes (a flood), drop (unknown: leave "
                "the row out) or refuse (default: stop and ask, since the choice changes the "
                "answer)."
            ),
        )
        parser.add_argument(
            "--split",
            default="random",
            help=(
                "How test rows are held out: random (stratified, default), time:COLUMN "
                "(train on earlier rows, test on the latest) or group:COLUMN (whole groups, "
                "e.g. stations, held out)."
            ),
        )
        parser.add_argument(
            "--calibration",
            default="auto",
            choices=["auto", "none", "sigmoid", "isotonic"],
            help=(
                "Map the model's probabilities onto observed flood rates, fitted on a slice of "
                "the training rows: auto (default) uses sigmoid or isotonic only where it "
                "clearly lowers the cross-validated Brier score."
            ),
        )
        parser.add_argument(
            "--bands",
            help=(
                "Risk band lower bounds, e.g. moderate=0.2,high=0.5,severe=0.8 (the defaults); "
                "low always starts at 0 and a band left out is not used."
            ),
        )
        parser.add_argument(
            "--band-recall",
            help=(
                "Choose band lower bounds on held-out training rows to catch these shares of "
                "floods, e.g. moderate=0.95,high=0.8,severe=0.5."
            ),
        )
        parser.add_argument(
            "--schema",
            metavar="FILE",
            help=(
                "YAML or JSON file of feature metadata for the CSV's columns: unit, "
                "description, kind (number, integer, category, cyclic), scope (place, moment), "
                "hard and typical limits, category codes, cyclic period (see the README). "
                "Needs --data; what it leaves out is inferred from the data."
            ),
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
        exclude = (
            [c.strip() for c in opts["exclude"].split(",") if c.strip()] if opts["exclude"] else []
        )

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
                exclude=exclude,
                split=opts["split"],
                calibration=opts["calibration"],
                bands=opts["bands"],
                band_recall=opts["band_recall"],
                schema_path=opts["schema"],
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
        for line in describe_evaluation(mv.manifest["metrics"], mv.manifest.get("evaluation", {})):
            self.stdout.write(f"  {line}")
        backend = "onnx" if mv.onnx_artifact else "scikit-learn"
        self.stdout.write(
            self.style.SUCCESS(
                f"Registered {mv} as {mv.stage} (sha256 {mv.sha256[:12]}…, fast path: {backend})."
            )
        )
