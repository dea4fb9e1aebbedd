"""API views for tokens: exchange a username and password for a token, list, revoke."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from knox.settings import CONSTANTS
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import AuthenticatedRequest
from accounts.models import ApiToken
from accounts.selectors import api_token_list
from accounts.services import api_token_create, api_token_revoke
from floodsite.exceptions import ApplicationError
from floodsite.rest import StrictSerializer


class TokenOut(serializers.Serializer):
    token_key = serializers.CharField(help_text="The first characters of the token; its id.")
    name = serializers.CharField()
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class TokenCreatedOut(TokenOut):
    token = serializers.CharField(help_text="The secret; shown only in this response.")


def token_to_dict(token: ApiToken) -> dict[str, Any]:
    return {
        "token_key": token.token_key,
        "name": token.name,
        "created": token.created.isoformat(),
        "expiry": token.expiry.isoformat() if token.expiry else None,
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


class TokenCollectionApi(APIView):
    """POST username + password for a new token (no session or token needed); GET your tokens."""

    class TokenCreateInput(StrictSerializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=128, style={"input_type": "password"})
        name = serializers.CharField(max_length=100)
        expires_in_days = serializers.IntegerField(
            required=False, min_value=1, max_value=settings.API_TOKEN_MAX_TTL_DAYS
        )

    @property
    def throttle_scope(self) -> str:
        return "auth" if self.request.method == "POST" else "read"

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_authenticators(self):
        # A token is created from a password alone: no session, so no CSRF to satisfy.
        creating = getattr(self.request, "method", None) == "POST"
        return [] if creating else super().get_authenticators()

    @extend_schema(
        operation_id="tokens_create",
        request=TokenCreateInput,
        responses={201: TokenCreatedOut},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = self.TokenCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            raise ApplicationError(
                "Username or password is wrong.",
                fields={"password": "does not match the username"},
                code="authentication_failed",
                status_code=status.HTTP_401_UNAUTHORIZED,
            )
        token, secret = api_token_create(
            user=user, name=data["name"], expires_in_days=data.get("expires_in_days")
        )
        return Response({**token_to_dict(token), "token": secret}, status=201)

    @extend_schema(operation_id="tokens_list", responses={200: TokenOut(many=True)})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response([token_to_dict(t) for t in api_token_list(user=request.user)])


# A key is the first characters of a token (visible ASCII); anything else names no token and
# must not reach the database (PostgreSQL refuses NUL bytes in text).
_TOKEN_KEY = re.compile(rf"[\x21-\x7e]{{1,{CONSTANTS.TOKEN_KEY_LENGTH}}}")


class TokenDetailApi(APIView):
    throttle_scope = "auth"

    @extend_schema(operation_id="tokens_revoke", responses={204: None})
    def delete(self, request: AuthenticatedRequest, token_key: str) -> Response:
        if not _TOKEN_KEY.fullmatch(token_key):
            raise ApplicationError("No such token.", code="not_found", status_code=404)
        api_token_revoke(user=request.user, token_key=token_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
