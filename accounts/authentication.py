"""API authentication: knox's hashed tokens, recording when each token was last used."""

from __future__ import annotations

import binascii
import re
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from rest_framework import exceptions

from accounts.models import ApiToken

# Writing on every request would double the database work of a prediction; a minute's
# resolution is what the tokens page needs.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Our tokens are visible ASCII. knox decodes the header as UTF-8 and looks its key up as sent,
# so a stray byte would be a 500 and a NUL a PostgreSQL error: refuse them as wrong tokens.
_TOKEN_TEXT = re.compile(rb"[\x21-\x7e]{1,512}")


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
        auth_token = ApiToken.objects.select_related("user").filter(digest=digest).first()
        if auth_token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
            raise exceptions.AuthenticationFailed("Token expired; create a new one.")
        return self.validate_user(auth_token)

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
