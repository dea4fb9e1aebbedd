"""manage.py setup_site: make a fresh installation usable; safe to run again.

In mlcore, not the project package: it trains the default model and creates the first
administrator, and the project package imports no app (the layers in docs/architecture.md).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from accounts.services import user_create_first_admin
from floodsite.local_state import local_state_prepare
from mlcore.models import ModelVersion, Stage


class Command(BaseCommand):
    help = (
        "Make the local folders and secret key (FLOODSITE_VAR_DIR), apply migrations, collect "
        "static files (production settings), train and promote the "
        "default model when there is no production version, and create a first administrator "
        "(random password, printed once) when there is no user. Running it again changes "
        "nothing that exists."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--skip-migrate", action="store_true")
        parser.add_argument(
            "--skip-collectstatic",
            action="store_true",
            help="Leave static files alone (the Docker image collects them when it is built).",
        )
        parser.add_argument(
            "--rows", type=int, default=60_000, help="Synthetic rows for the default model."
        )

    def handle(self, *args, **opts) -> None:
        for line in local_state_prepare():
            self.stdout.write(line)
        if not opts["skip_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("Database is up to date.")
        # Production pages name hashed files from collectstatic's manifest and are a 500
        # without it; the local mode serves the source folders and needs no copy.
        if not opts["skip_collectstatic"] and isinstance(staticfiles_storage, ManifestFilesMixin):
            call_command("collectstatic", interactive=False, verbosity=0)
            self.stdout.write(f"Static files collected into {settings.STATIC_ROOT}.")

        name = settings.FLOODSITE_MODEL_NAME
        production = ModelVersion.objects.filter(name=name, stage=Stage.PRODUCTION).first()
        if production is None:
            self.stdout.write(f"No production version of {name}: training the default model.")
            call_command(
                "train_model", promote=True, rows=opts["rows"], stdout=self.stdout, verbosity=1
            )
        else:
            self.stdout.write(f"Production model: {production}.")

        created = user_create_first_admin(username=opts["admin_username"])
        if created is not None:
            user, password = created
            self.stdout.write(
                self.style.WARNING(
                    f"Created administrator '{user.username}' with password: {password}\n"
                    "  It is shown only this once; change it after signing in."
                )
            )
