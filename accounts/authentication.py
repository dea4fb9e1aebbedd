"""API authentication: knox's hashed tokens, recording when each token was last used."""

from __future__ import annotations

import binascii
import re
import time
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from rest_framework import exceptions

from accounts.models import ApiToken, User
from floodsite.db import InsertGuard, select_one_joined

# Writing on every request would double the database work of a prediction; a minute's
# resolution is what the tokens page needs.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Our tokens are visible ASCII. knox decodes the header as UTF-8 and looks its key up as sent,
# so a stray byte would be a 500 and a NUL a PostgreSQL error: refuse them as wrong tokens.
_TOKEN_TEXT = re.compile(rb"[\x21-\x7e]{1,512}")


def _token_with_user_sql(quote) -> tuple[str, list]:
    token_fields = ApiToken._meta.concrete_fields
    user_fields = User._meta.concrete_fields
    token_table, user_table = quote(ApiToken._meta.db_table), quote(User._meta.db_table)
    columns = [f"{token_table}.{quote(f.column)}" for f in token_fields]
    columns += [f"{user_table}.{quote(f.column)}" for f in user_fields]
    user_fk = quote(ApiToken._meta.get_field("user").column)
    digest = quote(ApiToken._meta.get_field("digest").column)
    # Only quoted table and column names from the models go into the text.
    sql = (
        f"SELECT {', '.join(columns)} FROM {token_table} INNER JOIN {user_table} "  # noqa: S608
        f"ON {user_table}.{quote(User._meta.pk.column)} = {token_table}.{user_fk} "
        f"WHERE {token_table}.{digest} = %s"
    )
    return sql, [*token_fields, *user_fields]


def api_token_with_user(digest: str) -> ApiToken | None:
    """The token with this digest and its user, in one query (the SQL is built once)."""
    values = select_one_joined(
        key="accounts.api_token_with_user", build_sql=_token_with_user_sql, params=[digest]
    )
    if values is None:
        return None
    token_fields = ApiToken._meta.concrete_fields
    split = len(token_fields)
    token = ApiToken.from_db(DEFAULT_DB_ALIAS, [f.attname for f in token_fields], values[:split])
    token.user = User.from_db(
        DEFAULT_DB_ALIAS, [f.attname for f in User._meta.concrete_fields], values[split:]
    )
    return token


def _user_has_perm_sql(quote, user_id_sql: str) -> str:
    """``EXISTS``: the user whose id is ``user_id_sql`` holds the permission given by two
    parameters (app label, codename) directly or through a group, as ModelBackend reads it."""
    perm_table = quote(Permission._meta.db_table)
    type_table = quote(ContentType._meta.db_table)
    user_perms = User.user_permissions.through._meta
    user_groups = User.groups.through._meta
    group_perms = Group.permissions.through._meta

    def column(meta, name: str) -> str:
        return f"{quote(meta.db_table)}.{quote(meta.get_field(name).column)}"

    perm_id = f"{perm_table}.{quote(Permission._meta.pk.column)}"
    # Only quoted table and column names from the models go into the text.
    return (
        f"EXISTS (SELECT 1 FROM {perm_table} INNER JOIN {type_table} "  # noqa: S608
        f"ON {type_table}.{quote(ContentType._meta.pk.column)} = "
        f"{perm_table}.{quote(Permission._meta.get_field('content_type').column)} "
        f"WHERE {type_table}.{quote(ContentType._meta.get_field('app_label').column)} = %s "
        f"AND {perm_table}.{quote(Permission._meta.get_field('codename').column)} = %s AND ("
        f"EXISTS (SELECT 1 FROM {quote(user_perms.db_table)} "
        f"WHERE {column(user_perms, 'user')} = {user_id_sql} "
        f"AND {column(user_perms, 'permission')} = {perm_id}) "
        f"OR EXISTS (SELECT 1 FROM {quote(user_groups.db_table)} "
        f"INNER JOIN {quote(group_perms.db_table)} "
        f"ON {column(group_perms, 'group')} = {column(user_groups, 'group')} "
        f"WHERE {column(user_groups, 'user')} = {user_id_sql} "
        f"AND {column(group_perms, 'permission')} = {perm_id})))"
    )


def _token_valid_sql(quote) -> str:
    token_table, user_table = quote(ApiToken._meta.db_table), quote(User._meta.db_table)
    user_fk = quote(ApiToken._meta.get_field("user").column)
    digest = quote(ApiToken._meta.get_field("digest").column)
    expiry = quote(ApiToken._meta.get_field("expiry").column)
    is_active = quote(User._meta.get_field("is_active").column)
    is_superuser = quote(User._meta.get_field("is_superuser").column)
    user_id = f"{user_table}.{quote(User._meta.pk.column)}"
    # Only quoted table and column names from the models go into the text.
    return (
        f"SELECT 1 FROM {token_table} INNER JOIN {user_table} "  # noqa: S608
        f"ON {user_id} = {token_table}.{user_fk} "
        f"WHERE {token_table}.{digest} = %s AND {token_table}.{user_fk} = %s "
        f"AND ({token_table}.{expiry} IS NULL OR {token_table}.{expiry} > %s) "
        f"AND {user_table}.{is_active} "
        f"AND ({user_table}.{is_superuser} OR {_user_has_perm_sql(quote, user_id)})"
    )


def api_token_still_valid(
    *, digest: str, user_id: Any, now: datetime, permission: str
) -> InsertGuard:
    """A guard for an INSERT: write only while this token of this user works at ``now`` and
    the user holds ``permission`` ("app_label.codename"; a superuser holds every one)."""
    app_label, codename = permission.split(".", 1)
    return InsertGuard(
        key="accounts.api_token_still_valid",
        build_sql=_token_valid_sql,
        params=[digest, user_id, now, app_label, codename],
    )


class CachedToken(NamedTuple):
    """A token this process checked: its user's id and field values as read, never an instance.

    Each request that reuses the check gets a User of its own built from ``user_values``, so
    nothing one request caches on its user (permissions, attributes) is seen by another thread.
    """

    user_id: Any
    user_values: tuple[Any, ...]  # User._meta.concrete_fields order
    expiry: datetime | None
    reuse_until: float  # time.monotonic()


# Per process: token digest -> what its check found, for API_TOKEN_CACHE_SECONDS.
_checked_tokens: dict[str, CachedToken] = {}
_CHECKED_TOKENS_MAX = 10_000


def forget_checked_token(digest: str) -> None:
    _checked_tokens.pop(digest, None)


def forget_checked_user(user_id: Any) -> None:
    """Drop this process's reusable checks of a user's tokens (renamed, deactivated, ...).

    Other processes notice within API_TOKEN_CACHE_SECONDS, and their guarded writes refuse a
    deactivated user at once; a rename shows there when their reuse runs out.
    """
    for digest in [d for d, entry in _checked_tokens.items() if entry.user_id == user_id]:
        _checked_tokens.pop(digest, None)


def _user_attnames() -> list[str]:
    return [f.attname for f in User._meta.concrete_fields]


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`: one primary-key lookup by the token's digest.

    knox looks tokens up by prefix and then reads every token of the user to prune expired
    ones, on every request; here an expired token is simply refused (the tokens page shows it
    as expired until its owner or an administrator removes it).
    """

    def authenticate_credentials(self, token: bytes):
        if not _TOKEN_TEXT.fullmatch(token):
            raise exceptions.AuthenticationFailed("Invalid token.")
        try:
            digest = hash_token(token.decode("utf-8"))
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        auth_token = api_token_with_user(digest)
        if auth_token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
            raise exceptions.AuthenticationFailed("Token expired; create a new one.")
        return self.validate_user(auth_token)

    def authenticate_reusable(self, token: bytes) -> tuple[Any, str]:
        """``(user, digest)`` for a token, reusing this process's check of it for a while.

        Only for a request whose one write is guarded by ``api_token_still_valid``: a token
        revoked or expired since, a deactivated user, or one who lost the permission the write
        needs, is then refused by that write; the guard, not the reused check, decides.
        Anything else must call ``authenticate_credentials``. A reuse lasts at most
        API_TOKEN_CACHE_SECONDS and at most LAST_USED_RESOLUTION, so a token's "last used"
        on the tokens page stays within two of those of the truth. Every call returns a User
        of its own; saving a user drops this process's reuse of its tokens.
        """
        if not _TOKEN_TEXT.fullmatch(token):
            raise exceptions.AuthenticationFailed("Invalid token.")
        digest = hash_token(token.decode("ascii"))
        seconds = min(settings.API_TOKEN_CACHE_SECONDS, LAST_USED_RESOLUTION.total_seconds())
        cached = _checked_tokens.get(digest) if seconds > 0 else None
        if (
            cached is not None
            and cached.reuse_until > time.monotonic()
            and (cached.expiry is None or cached.expiry > timezone.now())
        ):
            return User.from_db(DEFAULT_DB_ALIAS, _user_attnames(), cached.user_values), digest
        user, auth_token = self.authenticate_credentials(token)
        if seconds > 0:
            if len(_checked_tokens) >= _CHECKED_TOKENS_MAX:
                _checked_tokens.clear()
            values = tuple(getattr(user, name) for name in _user_attnames())
            _checked_tokens[digest] = CachedToken(
                user_id=user.pk,
                user_values=values,
                expiry=auth_token.expiry,
                reuse_until=time.monotonic() + seconds,
            )
        return user, digest

    def validate_user(self, auth_token):
        user, token = super().validate_user(auth_token)
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return user, token


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token header in the OpenAPI document."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Token",  # noqa: S106 (a header word)
        )
