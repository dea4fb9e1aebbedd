"""Writes on accounts: creating the first administrator of a fresh installation."""

from __future__ import annotations

import secrets

from django.db import transaction

from accounts.models import User


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
