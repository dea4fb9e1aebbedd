"""A token check reused by the prediction fast path: ids and values, never a shared User."""

from __future__ import annotations

from accounts.authentication import ApiTokenAuthentication, _checked_tokens
from accounts.models import User
from accounts.services import api_token_create

URL = "/api/v1/predictions/"


def test_each_reuse_of_a_checked_token_gets_a_user_of_its_own(analyst):
    _, secret = api_token_create(user=analyst, name="tests", expires_in_days=30)
    token = secret.encode()
    authentication = ApiTokenAuthentication()
    first, digest = authentication.authenticate_reusable(token)
    second, again = authentication.authenticate_reusable(token)
    third, _ = authentication.authenticate_reusable(token)
    assert digest == again and digest in _checked_tokens
    # Reused, not looked up again, yet no two requests share one object.
    assert second is not third and second is not first
    assert second.pk == third.pk == analyst.pk and second.get_username() == "ana"
    second.username = "changed-by-one-request"
    assert third.get_username() == "ana"


def test_a_renamed_user_is_answered_under_the_new_name(api, analyst, typical_inputs):
    before = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert before.status_code == 201 and before.json()["user"] == "ana"

    renamed = User.objects.get(pk=analyst.pk)
    renamed.username = "ana.river"
    renamed.save()

    after = api.post(URL, {"inputs": typical_inputs}, format="json")
    assert after.status_code == 201
    assert after.json()["user"] == "ana.river"
