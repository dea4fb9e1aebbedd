"""Writes on accounts: the first administrator of a fresh installation, API tokens."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from knox.settings import knox_settings

from accounts.models import ApiToken, User
from floodsite.exceptions import ApplicationError


@transaction.atomic
def user_create_first_admin(*, username: str = "admin", email: str = "") -> tuple[User, str] | None:
    """Create a superuser with a random password when no user exists yet.

    Returns the user and the password (to be shown once), or None when any user exists,
    so running the setup again never adds accounts or resets passwords.
    """
    if User.objects.select_for_update().exists():
        return None
    password = secrets.token_urlsafe(15)
    user = User.objects.create_superuser(username=username, email=email, password=password)
    return user, password


def api_token_create(
    *, user: User, name: str, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a named token; the secret is returned once and only its digest is stored."""
    max_days = settings.API_TOKEN_MAX_TTL_DAYS
    days = expires_in_days if expires_in_days is not None else knox_settings.TOKEN_TTL.days
    if not 1 <= days <= max_days:
        raise ApplicationError(
            f"A token lives between 1 and {max_days} days.",
            fields={"expires_in_days": f"must be between 1 and {max_days}"},
        )
    name = name.strip()
    if not name:
        raise ApplicationError("Give the token a name.", fields={"name": "required"})
    token, secret = ApiToken.objects.create(user=user, expiry=timedelta(days=days), name=name)
    return token, secret


def api_token_revoke(*, user: User, token_key: str) -> None:
    """Revoke one of ``user``'s tokens; someone else's token is reported as not found."""
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise ApplicationError("No such token.", code="not_found", status_code=404)
