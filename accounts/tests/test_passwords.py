"""Password reset that gives nothing away and cannot be hammered; password change and tokens."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken
from accounts.services import api_token_create
from accounts.tasks import password_reset_mail_task
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

RESET = "/accounts/password/reset/"
CHANGE = "/accounts/password/change/"


@pytest.fixture
def person():
    return UserFactory(username="ana", email="ana@example.org")


def _answer(response) -> tuple[int, str, bytes, list[str]]:
    headers = sorted(name for name in response.headers if name.lower() != "x-request-id")
    return response.status_code, response.get("Location", ""), response.content, headers


def test_a_reset_answers_alike_for_known_and_unknown_addresses_and_mails_from_a_task(
    client, person, mailoutbox
):
    with CaptureQueriesContext(connection) as known_queries:
        known = client.post(RESET, {"email": "ana@example.org"})
    with CaptureQueriesContext(connection) as unknown_queries:
        unknown = client.post(RESET, {"email": "nobody@example.org"})

    assert _answer(known) == _answer(unknown)
    assert known.status_code == 302 and known["Location"] == "/accounts/password/reset/sent/"
    # The request neither looks the address up nor waits on the mail server: both are the
    # task's work, so the two answers take the same path and the same time.
    assert mailoutbox == []
    for queries in (known_queries, unknown_queries):
        assert not [q for q in queries.captured_queries if "accounts_user" in q["sql"]]

    password_reset_mail_task.apply(
        kwargs={"email": "ana@example.org", "domain": "testserver", "use_https": False}
    )
    password_reset_mail_task.apply(
        kwargs={"email": "nobody@example.org", "domain": "testserver", "use_https": False}
    )
    (message,) = mailoutbox
    assert message.to == ["ana@example.org"]
    assert re.search(r"http://testserver/accounts/password/reset/\S+/", message.body)


def test_the_queued_mail_reaches_the_owner_with_a_working_link(
    client, person, mailoutbox, eager_tasks
):
    client.post(RESET, {"email": "ANA@example.org"})
    (message,) = mailoutbox
    path = re.search(r"http://testserver(/accounts/password/reset/\S+/)", message.body).group(1)
    form_url = client.get(path).url
    saved = client.post(form_url, {"new_password1": "rain-1234x", "new_password2": "rain-1234x"})
    assert saved.status_code == 302
    person.refresh_from_db()
    assert person.check_password("rain-1234x")


def test_a_reset_is_throttled_per_address_and_per_client(
    client, person, settings, throttle_clock, mailoutbox
):
    settings.THROTTLE_PASSWORD_RESET_ADDRESS = "2/hour"
    settings.THROTTLE_PASSWORD_RESET_CLIENT = "6/hour"
    for _ in range(2):
        assert client.post(RESET, {"email": "ana@example.org"}).status_code == 302
    refused = client.post(RESET, {"email": "ana@example.org"})
    assert refused.status_code == 429
    assert "Too many reset requests for this address" in refused.content.decode()
    # The same refusal for an address with no account: the limit reveals nothing.
    for _ in range(2):
        client.post(RESET, {"email": "ghost@example.org"})
    ghost = client.post(RESET, {"email": "ghost@example.org"})
    assert ghost.status_code == 429
    assert "Too many reset requests for this address" in ghost.content.decode()

    # Another client may still ask for its own address ...
    other = client_from("10.0.0.9")
    assert other.post(RESET, {"email": "ben@example.org"}).status_code == 302
    # ... but one client cycling through addresses is stopped by the per-client limit.
    spree = [client.post(RESET, {"email": f"x{i}@example.org"}).status_code for i in range(3)]
    assert 429 in spree
    last = client.post(RESET, {"email": "y@example.org"})
    assert last.status_code == 429
    assert "Too many reset requests from your address" in last.content.decode()
    assert int(last["Retry-After"]) >= 1


def client_from(address: str):
    from django.test import Client

    return Client(REMOTE_ADDR=address)


def _change_password(client, **extra):
    new = "tide-gauge-2024"
    data = {"old_password": PASSWORD, "new_password1": new, "new_password2": new, **extra}
    return client.post(CHANGE, data, follow=True)


def test_the_password_change_form_offers_to_revoke_every_token_ticked(client, person):
    client.force_login(person)
    page = client.get(CHANGE).content.decode()
    box = re.search(r'<input[^>]*name="revoke_tokens"[^>]*>', page).group(0)
    assert 'type="checkbox"' in box and "checked" in box


def test_changing_the_password_with_the_box_ticked_revokes_every_token(client, person):
    other = UserFactory(username="ben")
    api_token_create(user=person, name="laptop", expires_in_days=30)
    api_token_create(user=person, name="gauge", expires_in_days=30)
    _, others_secret = api_token_create(user=other, name="ben's", expires_in_days=30)
    _, secret = api_token_create(user=person, name="cron", expires_in_days=30)
    client.force_login(person)
    response = _change_password(client, revoke_tokens="on")
    assert "3 API tokens were revoked" in response.content.decode()
    assert not ApiToken.objects.filter(user=person).exists()
    assert ApiToken.objects.filter(user=other).count() == 1
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/v1/models/active/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {others_secret}")
    assert api.get("/api/v1/models/active/").status_code != 401


def test_changing_the_password_with_the_box_cleared_keeps_the_tokens(client, person):
    api_token_create(user=person, name="laptop", expires_in_days=30)
    client.force_login(person)
    response = _change_password(client)  # a cleared box sends nothing
    assert "API tokens are not affected" in response.content.decode()
    assert ApiToken.objects.filter(user=person).count() == 1
