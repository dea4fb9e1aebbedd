"""API tokens as a client lives with them: created from a password, used, expired, revoked;
every refusal is a 401/400 in the one error format."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tests.factories import UserFactory, token_for

TOKENS = "/api/v1/auth/tokens/"
PROTECTED = "/api/v1/predictions/"
PASSWORD = "flood-risk-1"


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """Token creation is throttled per address; each test starts with a clean count."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


def refused(response, status: int, code: str, *fields: str) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["request_id"] == response["X-Request-ID"]
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    for name in fields:
        assert name in body["error"]["fields"], body
    return body["error"]["fields"]


def with_token(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def create(client: APIClient, **body):
    return client.post(TOKENS, body, format="json")


# --- creating a token -----------------------------------------------------------------------


def test_a_password_buys_a_named_token_that_works(owner):
    response = create(
        APIClient(), username="owner", password=PASSWORD, name="ci", expires_in_days=7
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["token"].startswith("fs_")
    assert body["token"].startswith(body["token_key"])
    assert body["name"] == "ci"
    token = ApiToken.objects.get(token_key=body["token_key"])
    assert token.user == owner
    assert timedelta(days=6) < token.expiry - timezone.now() <= timedelta(days=7)
    client = with_token(body["token"])
    assert client.get(PROTECTED).status_code == 200
    listing = client.get(TOKENS).json()
    assert [t["token_key"] for t in listing] == [body["token_key"]]
    assert "token" not in listing[0]
    assert listing[0]["last_used_at"] is not None


def test_a_wrong_password_is_401(owner):
    response = create(APIClient(), username="owner", password="guess", name="ci")
    refused(response, 401, "authentication_failed", "password")
    assert ApiToken.objects.count() == 0


def test_an_unknown_user_is_the_same_401(db):
    response = create(APIClient(), username="nobody", password=PASSWORD, name="ci")
    refused(response, 401, "authentication_failed", "password")


def test_a_deactivated_user_cannot_create_a_token(owner):
    owner.is_active = False
    owner.save()
    refused(
        create(APIClient(), username="owner", password=PASSWORD, name="ci"),
        401,
        "authentication_failed",
    )
    assert ApiToken.objects.count() == 0


@pytest.mark.parametrize("extra", ["user", "expiry", "token_key", "digest", "is_staff"])
def test_unknown_fields_are_refused_by_name(owner, extra):
    body = {"username": "owner", "password": PASSWORD, "name": "ci", extra: "x"}
    fields = refused(APIClient().post(TOKENS, body, format="json"), 400, "invalid", extra)
    assert set(fields) == {extra}
    assert ApiToken.objects.count() == 0


@pytest.mark.parametrize("days", [0, -1, 366, 3651, 10**12, "soon", 1.5, None, True])
def test_a_lifetime_out_of_range_is_refused(owner, days):
    response = create(
        APIClient(), username="owner", password=PASSWORD, name="ci", expires_in_days=days
    )
    refused(response, 400, "invalid", "expires_in_days")
    assert ApiToken.objects.count() == 0


def test_the_longest_lifetime_is_accepted(owner, settings):
    days = settings.API_TOKEN_MAX_TTL_DAYS
    response = create(
        APIClient(), username="owner", password=PASSWORD, name="ci", expires_in_days=days
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "body,field",
    [
        ({"password": PASSWORD, "name": "ci"}, "username"),
        ({"username": "owner", "name": "ci"}, "password"),
        ({"username": "owner", "password": PASSWORD}, "name"),
        ({"username": "owner", "password": PASSWORD, "name": "   "}, "name"),
        ({"username": "owner", "password": PASSWORD, "name": "x" * 101}, "name"),
        ({"username": "owner\x00", "password": PASSWORD, "name": "ci"}, "username"),
        ({"username": ["owner"], "password": PASSWORD, "name": "ci"}, "username"),
    ],
    ids=["no-username", "no-password", "no-name", "blank-name", "long-name", "nul", "list"],
)
def test_a_bad_create_names_the_field(owner, body, field):
    refused(APIClient().post(TOKENS, body, format="json"), 400, "invalid", field)
    assert ApiToken.objects.count() == 0


def test_creating_tokens_is_throttled(owner, monkeypatch, throttle_clock):
    from rest_framework.throttling import ScopedRateThrottle

    rates = {**ScopedRateThrottle.THROTTLE_RATES, "auth": "2/min"}
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)
    client = APIClient()
    for _ in range(2):
        assert create(client, username="owner", password=PASSWORD, name="ci").status_code == 201
    response = create(client, username="owner", password=PASSWORD, name="ci")
    refused(response, 429, "throttled")
    assert response["Retry-After"] == "30"  # the clock is pinned mid-window
    assert ApiToken.objects.count() == 2
    throttle_clock.advance(30)  # the next window
    assert create(client, username="owner", password=PASSWORD, name="ci").status_code == 201


def test_repeated_wrong_passwords_lock_the_account_out_in_the_error_format(owner, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        refused(
            create(client, username="owner", password="guess", name="ci"),
            401,
            "authentication_failed",
        )
    cache.clear()  # keep the throttle out of the way: this is about the lockout
    last = create(client, username="owner", password="guess", name="ci")
    refused(last, 429, "locked_out", "password")
    # Even the right password is refused until the cool-off ends.
    response = create(client, username="owner", password=PASSWORD, name="ci")
    refused(response, 429, "locked_out", "password")
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert ApiToken.objects.count() == 0


# --- using a token --------------------------------------------------------------------------


def test_no_token_is_401_with_a_challenge(db):
    response = APIClient().get(PROTECTED)
    refused(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    "header",
    [
        "Token",
        "Token ",
        "Token a b",
        "Bearer fs_abc",
        "Basic b3duZXI6Zmxvb2Qtcmlzay0x",
        "fs_abc",
    ],
)
def test_a_malformed_header_is_401(owner, header):
    response = APIClient().get(PROTECTED, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}


@pytest.mark.parametrize(
    "secret",
    ["fs_" + "0" * 64, "not-a-token", "x" * 5000, "fs_\xff\xfe", "fs_\x00abc", "fs_caf\u00e9"],
    ids=["well-formed", "short", "long", "latin-1-bytes", "nul", "accented"],
)
def test_a_wrong_token_is_401(owner, secret):
    token_for(owner)
    refused(with_token(secret).get(PROTECTED), 401, "authentication_failed")


def test_a_token_with_one_character_changed_is_401(owner):
    secret = token_for(owner)
    tampered = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    refused(with_token(tampered).get(PROTECTED), 401, "authentication_failed")
    assert with_token(secret).get(PROTECTED).status_code == 200


def test_an_expired_token_is_401(owner):
    secret = token_for(owner)
    ApiToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    refused(with_token(secret).get(PROTECTED), 401, "authentication_failed")
    refused(with_token(secret).get(TOKENS), 401, "authentication_failed")


def test_a_revoked_token_is_401(owner):
    secret = token_for(owner)
    client = with_token(secret)
    key = client.get(TOKENS).json()[0]["token_key"]
    assert client.delete(f"{TOKENS}{key}/").status_code == 204
    refused(client.get(PROTECTED), 401, "authentication_failed")
    assert ApiToken.objects.count() == 0


def test_revoking_one_token_keeps_the_others(owner):
    first, second = token_for(owner), token_for(owner)
    with_token(first).delete(f"{TOKENS}{second[:15]}/")
    assert with_token(first).get(PROTECTED).status_code == 200
    refused(with_token(second).get(PROTECTED), 401, "authentication_failed")


def test_a_deactivated_users_token_is_401(owner):
    secret = token_for(owner)
    owner.is_active = False
    owner.save()
    refused(with_token(secret).get(PROTECTED), 401, "authentication_failed")


def test_someone_elses_token_cannot_be_revoked(owner):
    mine = token_for(owner)
    theirs = token_for(UserFactory(username="other"))
    refused(with_token(mine).delete(f"{TOKENS}{theirs[:15]}/"), 404, "not_found")
    assert with_token(theirs).get(PROTECTED).status_code == 200


@pytest.mark.parametrize("key", ["fs_nothing", "%00", "x" * 300, "caf%C3%A9"])
def test_revoking_a_token_that_does_not_exist_is_404(owner, key):
    refused(with_token(token_for(owner)).delete(f"{TOKENS}{key}/"), 404, "not_found")
    assert ApiToken.objects.count() == 1


def test_listing_tokens_needs_a_token(db):
    refused(APIClient().get(TOKENS), 401, "not_authenticated")
    refused(APIClient().delete(f"{TOKENS}fs_abc/"), 401, "not_authenticated")
