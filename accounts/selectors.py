"""Reads on accounts: a user's API tokens."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiToken, User
from floodsite.exceptions import ApplicationError


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created")


def api_token_get(*, user: User, token_key: str) -> ApiToken:
    """One of ``user``'s tokens; another user's token is not found, like a missing one."""
    token = ApiToken.objects.filter(user=user, token_key=token_key).first()
    if token is None:
        raise ApplicationError("No such token.", code="not_found", status_code=404)
    return token
