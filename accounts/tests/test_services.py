"""accounts.services: sign-up, profile updates, lockout clearing and API tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.utils import timezone

from accounts.models import ApiToken
from accounts.roles import Role
from accounts.services import (
    api_token_create,
    api_token_revoke,
    user_lockout_clear,
    user_sign_up,
    user_update,
)
from accounts.tests.factories import UserFactory
from floodsite.exceptions import ApplicationError

pytestmark = pytest.mark.django_db


def test_sign_up_is_refused_while_signup_is_off(settings):
    settings.ALLOW_SIGNUP = False
    with pytest.raises(ApplicationError) as info:
        user_sign_up(username="nia", email="nia@example.org", password="flood-risk-1")
    assert info.value.status_code == 404


def test_sign_up_makes_an_active_analyst(settings):
    settings.ALLOW_SIGNUP = True
    user = user_sign_up(username=" nia ", email="Nia@EXAMPLE.org", password="flood-risk-1")
    assert user.username == "nia"
    assert user.email == "Nia@example.org"  # the domain is normalised, the mailbox kept
    assert user.is_active and not user.is_staff
    assert user.check_password("flood-risk-1")
    assert user.role == Role.ANALYST


@pytest.mark.parametrize(
    ("username", "email", "field"),
    [
        ("PERSON0", "new@example.org", "username"),  # taken, whatever the case
        ("", "new@example.org", "username"),
        ("bad name!", "new@example.org", "username"),
        ("newbie", "person0@example.org", "email"),  # address of another account
        ("newbie", "not-an-address", "email"),
    ],
)
def test_sign_up_names_the_field_to_fix(settings, username, email, field):
    settings.ALLOW_SIGNUP = True
    UserFactory(username="person0", email="person0@example.org")
    with pytest.raises(ApplicationError) as info:
        user_sign_up(username=username, email=email, password="flood-risk-1")
    assert field in info.value.fields


def test_update_changes_name_and_email():
    user = UserFactory()
    user_update(user=user, first_name=" Ana ", last_name="Costa", email="ana@example.org")
    user.refresh_from_db()
    assert (user.first_name, user.last_name, user.email) == ("Ana", "Costa", "ana@example.org")


def test_update_refuses_an_address_of_another_account_but_keeps_ones_own():
    UserFactory(email="taken@example.org")
    user = UserFactory(email="mine@example.org")
    user_update(user=user, first_name="", last_name="", email="MINE@example.org")
    with pytest.raises(ApplicationError) as info:
        user_update(user=user, first_name="", last_name="", email="Taken@example.org")
    assert info.value.fields == {"email": "already used by another account"}


def test_lockout_clear_forgets_the_failed_attempts(client, settings):
    settings.AXES_FAILURE_LIMIT = 2
    user = UserFactory()
    for _ in range(2):
        client.post("/accounts/login/", {"username": user.username, "password": "wrong"})
    assert AccessAttempt.objects.filter(username=user.username).exists()
    user_lockout_clear(username=user.username)
    assert not AccessAttempt.objects.filter(username=user.username).exists()


def test_token_create_stores_only_a_digest_and_expires_in_the_given_days():
    user = UserFactory()
    token, secret = api_token_create(user=user, name="  nightly  ", expires_in_days=7)
    assert token.name == "nightly"
    assert secret.startswith("fs_") and secret.startswith(token.token_key)
    assert secret not in token.digest
    assert abs(token.expiry - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert not token.is_expired


@pytest.mark.parametrize(
    ("name", "days", "field"),
    [("x", 0, "expires_in_days"), ("x", 366, "expires_in_days"), (" ", 5, "name")],
)
def test_token_create_refuses_bad_input(name, days, field, settings):
    settings.API_TOKEN_MAX_TTL_DAYS = 365
    with pytest.raises(ApplicationError) as info:
        api_token_create(user=UserFactory(), name=name, expires_in_days=days)
    assert field in info.value.fields
    assert not ApiToken.objects.exists()


def test_token_revoke_deletes_only_the_owners_token():
    owner, other = UserFactory(), UserFactory()
    token, _ = api_token_create(user=owner, name="ci", expires_in_days=3)
    with pytest.raises(ApplicationError) as info:
        api_token_revoke(user=other, token_key=token.token_key)
    assert info.value.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
    api_token_revoke(user=owner, token_key=token.token_key)
    assert not ApiToken.objects.exists()


def test_a_token_past_its_expiry_is_expired():
    token, _ = api_token_create(user=UserFactory(), name="old", expires_in_days=1)
    token.expiry = timezone.now() - timedelta(seconds=1)
    assert token.is_expired
