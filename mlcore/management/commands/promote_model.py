"""manage.py promote_model: make a registered version the production one."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from floodsite.exceptions import ApplicationError
from mlcore.selectors import model_version_get
from mlcore.services import model_version_promote


class Command(BaseCommand):
    help = "Promote NAME VERSION to production; the current production version is archived."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)
        parser.add_argument("--reason", required=True, help="Why; kept in the stage history.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Promote even if the promotion gate refuses it (recorded as forced).",
        )

    def handle(self, *args, **opts) -> None:
        try:
            mv = model_version_get(name=opts["name"], version=opts["version"])
            model_version_promote(
                model_version=mv, user=None, reason=opts["reason"], force=opts["force"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"{mv} is now in production."))
