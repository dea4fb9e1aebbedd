"""manage.py invite_user: create an account without a password and e-mail a link to set one.

    manage.py invite_user ana ana@example.org --role auditor --base-url https://floods.example.org

The link is Django's password-reset link (valid PASSWORD_RESET_TIMEOUT seconds, three days by
default). --dry-run checks the input and prints what would happen, creating nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_invite
from floodsite.exceptions import ApplicationError
from floodsite.local_state import secret_key_require

LOCAL_BASE_URL = "http://localhost:8000"


class Command(BaseCommand):
    help = (
        "Invite a person: create their account in a role, with no password, and e-mail them a "
        "one-time link to choose one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("email")
        parser.add_argument(
            "--role", choices=Role.values, default=Role.ANALYST, help="Default: analyst."
        )
        parser.add_argument(
            "--base-url",
            default="",
            help=(
                "Address people open the site at, used in the link "
                f"(required in production; locally {LOCAL_BASE_URL})."
            ),
        )
        parser.add_argument(
            "--invited-by", default="", help="Username named in the e-mail as the inviter."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Check everything, create and send nothing."
        )

    def handle(self, *args, **opts) -> None:
        secret_key_require()  # the link is signed with it
        base_url = opts["base_url"] or ("" if settings.PRODUCTION else LOCAL_BASE_URL)
        if not base_url:
            raise CommandError("--base-url is required in production (e.g. https://floods.org).")
        invited_by = None
        if opts["invited_by"]:
            invited_by = User.objects.filter(username=opts["invited_by"]).first()
            if invited_by is None:
                raise CommandError(f"--invited-by: no user {opts['invited_by']!r}.")
        try:
            user = user_invite(
                username=opts["username"],
                email=opts["email"],
                role=opts["role"],
                invited_by=invited_by,
                base_url=base_url,
                dry_run=opts["dry_run"],
            )
        except ApplicationError as exc:
            reasons = "; ".join(f"{field}: {why}" for field, why in exc.fields.items())
            raise CommandError(f"{exc.message} ({reasons})" if reasons else exc.message) from None
        if opts["dry_run"]:
            self.stdout.write(
                f"Dry run: would invite '{user.username}' <{user.email}> as {opts['role']}, "
                f"with a link to {base_url}. Nothing was created or sent."
            )
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Invited '{user.username}' <{user.email}> as {opts['role']}; "
                "the e-mail with the link to choose a password is sent."
            )
        )
