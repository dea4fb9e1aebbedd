"""manage.py export_onnx: write a version's ONNX model and manifest for offline use."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from mlcore.selectors import model_version_get, model_version_get_production
from mlcore.services import model_version_export_onnx


class Command(BaseCommand):
    help = "Export the ONNX file and manifest of a model version (default: production)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default=None)
        parser.add_argument(
            "--model-version",
            dest="model_version",
            type=int,
            default=None,
            help="Version number (default: the production version).",
        )
        parser.add_argument("--out", default="export", help="Output folder (default ./export).")

    def handle(self, *args, **opts) -> None:
        name = opts["name"] or settings.FLOODSITE_MODEL_NAME
        try:
            if opts["model_version"] is None:
                mv = model_version_get_production(name=name)
            else:
                mv = model_version_get(name=name, version=opts["model_version"])
            onnx_path, manifest_path = model_version_export_onnx(
                model_version=mv, out_dir=Path(opts["out"])
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {onnx_path} and {manifest_path}."))
