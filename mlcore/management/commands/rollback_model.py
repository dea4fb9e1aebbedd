"""manage.py rollback_model: put the previous production version back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from mlcore.services import model_version_rollback


class Command(BaseCommand):
    help = "Roll NAME back to the version that was in production before the current one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--reason", required=True, help="Why; kept in the stage history.")

    def handle(self, *args, **opts) -> None:
        try:
            mv = model_version_rollback(name=opts["name"], user=None, reason=opts["reason"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"{mv} is back in production."))
