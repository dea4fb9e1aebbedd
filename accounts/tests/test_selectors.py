"""accounts.selectors: a user's tokens, and nobody else's."""

from __future__ import annotations

import pytest

from accounts.selectors import api_token_get, api_token_list
from accounts.services import api_token_create
from accounts.tests.factories import UserFactory
from floodsite.exceptions import ApplicationError

pytestmark = pytest.mark.django_db


def test_token_list_is_the_users_own_newest_first():
    owner, other = UserFactory(), UserFactory()
    api_token_create(user=owner, name="first", expires_in_days=3)
    api_token_create(user=owner, name="second", expires_in_days=3)
    api_token_create(user=other, name="theirs", expires_in_days=3)
    assert [t.name for t in api_token_list(user=owner)] == ["second", "first"]


def test_token_get_of_another_user_is_not_found():
    owner, other = UserFactory(), UserFactory()
    token, _ = api_token_create(user=owner, name="ci", expires_in_days=3)
    assert api_token_get(user=owner, token_key=token.token_key) == token
    with pytest.raises(ApplicationError) as info:
        api_token_get(user=other, token_key=token.token_key)
    assert info.value.status_code == 404
