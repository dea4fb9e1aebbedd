"""The accounts pages: sign-in, passwords, sign-up, profile, API tokens and the CSRF page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, User
from accounts.roles import Role
from accounts.services import api_token_create, user_set_role
from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKENS = "/accounts/tokens/"


@pytest.fixture
def person():
    return UserFactory(username="ana", first_name="Ana")


@pytest.fixture
def signed_in(client, person):
    client.force_login(person)
    return client


def text(response) -> str:
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- sign in and out ------------------------------------------------------------------------


def test_login_page_has_labelled_fields_and_the_reset_link(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    page = text(response)
    assert '<label for="id_username">Username</label>' in page
    assert '<label for="id_password">Password</label>' in page
    assert 'autocomplete="current-password"' in page
    assert 'href="/accounts/password/reset/"' in page
    assert "/accounts/signup/" not in page  # sign-up is off by default


def test_login_with_the_right_password_goes_home(client, person):
    response = client.post(LOGIN, {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_says_so_next_to_both_fields(client, person):
    response = client.post(LOGIN, {"username": "ana", "password": "not-it"})
    assert response.status_code == 400
    page = text(response)
    assert "The username or password is wrong" in page
    assert 'id="login-error"' in page
    assert page.count('aria-describedby="login-error"') == 2
    assert 'aria-invalid="true"' in page
    assert 'value="ana"' in page  # the username stays filled in


def test_empty_login_form_marks_the_missing_fields(client):
    response = client.post(LOGIN, {"username": "", "password": ""})
    assert response.status_code == 400
    page = text(response)
    assert page.count("This field is required.") == 2
    assert 'id="id_username_error"' in page
    assert 'aria-describedby="id_username_error"' in page


def test_logout_is_a_post(signed_in):
    assert signed_in.get("/accounts/logout/").status_code == 405
    response = signed_in.post("/accounts/logout/")
    assert response.status_code == 302
    assert signed_in.get("/").status_code == 302  # back to the sign-in page


def test_nav_links_to_the_accounts_pages(signed_in):
    page = text(signed_in.get("/accounts/profile/"))
    assert 'href="/accounts/tokens/"' in page
    assert 'href="/accounts/profile/" aria-current="page"' in page


def test_stale_csrf_token_gets_the_sites_403_page(person):
    client = Client(enforce_csrf_checks=True)
    response = client.post(LOGIN, {"username": "ana", "password": PASSWORD})
    assert response.status_code == 403
    page = text(response)
    assert "This form has expired" in page
    assert "css/site.css" in page
    assert "CSRF verification failed" not in page


# --- lockout (django-axes) ------------------------------------------------------------------


def test_too_many_wrong_passwords_lock_the_account_with_429(client, person, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert client.post(LOGIN, {"username": "ana", "password": "guess"}).status_code == 400
    response = client.post(LOGIN, {"username": "ana", "password": "guess"})
    assert response.status_code == 429
    page = text(response)
    assert "Sign-in temporarily locked" in page
    assert "15 minutes" in page
    assert 'href="/accounts/password/reset/"' in page

    # Locked means locked: the right password is refused as well, and nobody is signed in.
    response = client.post(LOGIN, {"username": "ana", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_lockout_is_per_username(client, person, settings):
    settings.AXES_FAILURE_LIMIT = 2
    UserFactory(username="rui")
    for _ in range(2):
        client.post(LOGIN, {"username": "ana", "password": "guess"})
    response = client.post(LOGIN, {"username": "rui", "password": PASSWORD})
    assert response.status_code == 302


def test_the_api_token_endpoint_is_locked_out_too(client, person, settings):
    settings.AXES_FAILURE_LIMIT = 2
    body = {"username": "ana", "password": "guess", "name": "ci"}
    url = "/api/v1/auth/tokens/"
    assert client.post(url, body, content_type="application/json").status_code == 401
    assert client.post(url, body, content_type="application/json").status_code == 429
    body["password"] = PASSWORD
    locked = client.post(url, body, content_type="application/json")
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert not ApiToken.objects.exists()
    # ... and the lock covers the sign-in page, which shares the failure count.
    assert client.post(LOGIN, {"username": "ana", "password": PASSWORD}).status_code == 429


def test_resetting_the_password_by_email_lifts_the_lockout(
    client, person, settings, mailoutbox, eager_tasks
):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        client.post(LOGIN, {"username": "ana", "password": "guess"})
    client.post("/accounts/password/reset/", {"email": person.email})
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mailoutbox[0].body)
    form_url = client.get(link.group(1)).url
    client.post(form_url, {"new_password1": "new-flood-pw-7", "new_password2": "new-flood-pw-7"})
    response = client.post(LOGIN, {"username": "ana", "password": "new-flood-pw-7"})
    assert response.status_code == 302


# --- password change ------------------------------------------------------------------------

CHANGE = "/accounts/password/change/"


def test_password_change_needs_sign_in(client):
    response = client.get(CHANGE)
    assert response.status_code == 302
    assert response.url.startswith(LOGIN)


def test_password_change_works_and_keeps_the_session(signed_in, person):
    response = signed_in.post(
        CHANGE,
        {
            "old_password": PASSWORD,
            "new_password1": "tide-gauge-2024",
            "new_password2": "tide-gauge-2024",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/accounts/password/change/done/"
    assert "Password changed" in text(response)
    person.refresh_from_db()
    assert person.check_password("tide-gauge-2024")
    assert signed_in.get("/accounts/profile/").status_code == 200


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"old_password": PASSWORD, "new_password1": "tide-gauge-1", "new_password2": "tide-x"},
            "new_password2",
            "The two password fields didn",
        ),
        (
            {
                "old_password": "wrong",
                "new_password1": "tide-gauge-1",
                "new_password2": "tide-gauge-1",
            },
            "old_password",
            "Your old password was entered incorrectly",
        ),
        (
            {"old_password": PASSWORD, "new_password1": "12345678", "new_password2": "12345678"},
            "new_password2",
            "too common",
        ),
        ({}, "old_password", "This field is required."),
    ],
)
def test_password_change_explains_bad_input_at_the_field(signed_in, person, data, field, message):
    response = signed_in.post(CHANGE, data)
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert f'id="id_{field}_error"' in page
    assert re.search(rf'aria-describedby="[^"]*id_{field}_error"', page)
    person.refresh_from_db()
    assert person.check_password(PASSWORD)


# --- password reset -------------------------------------------------------------------------


def test_password_reset_mails_a_link_that_sets_a_new_password(
    client, person, mailoutbox, eager_tasks
):
    response = client.post("/accounts/password/reset/", {"email": "ANA@example.org"}, follow=True)
    assert "Check your e-mail" in text(response)
    (message,) = mailoutbox
    assert message.subject == "Reset your floodsite password"
    path = re.search(r"http://testserver(/accounts/password/reset/\S+/)", message.body).group(1)

    form_url = client.get(path).url
    response = client.post(form_url, {"new_password1": "rain-1234x", "new_password2": "other"})
    assert response.status_code == 400
    assert "The two password fields didn" in text(response)

    response = client.post(
        form_url, {"new_password1": "rain-1234x", "new_password2": "rain-1234x"}, follow=True
    )
    assert "Password saved" in text(response)
    assert client.post(LOGIN, {"username": "ana", "password": "rain-1234x"}).status_code == 302


def test_password_reset_does_not_tell_whether_an_address_exists(client, mailoutbox, eager_tasks):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert response.status_code == 302
    assert response.url == "/accounts/password/reset/sent/"
    assert mailoutbox == []


def test_password_reset_refuses_a_malformed_address(client):
    response = client.post("/accounts/password/reset/", {"email": "not an address"})
    assert response.status_code == 400
    assert "Enter a valid email address." in text(response)


def test_a_bad_reset_link_says_so(client, person):
    response = client.get("/accounts/password/reset/MQ/bad-token/")
    assert response.status_code == 200
    assert "This link no longer works" in text(response)


# --- sign-up --------------------------------------------------------------------------------

SIGNUP = "/accounts/signup/"
GOOD_SIGNUP = {
    "username": "nia",
    "email": "nia@example.org",
    "password1": "river-bank-81",
    "password2": "river-bank-81",
}


def test_signup_is_404_while_off(client, settings):
    settings.ALLOW_SIGNUP = False
    assert client.get(SIGNUP).status_code == 404
    assert client.post(SIGNUP, GOOD_SIGNUP).status_code == 404
    assert not User.objects.filter(username="nia").exists()


def test_signup_makes_a_signed_in_analyst(client, settings):
    settings.ALLOW_SIGNUP = True
    assert client.get(SIGNUP).status_code == 200
    assert 'href="/accounts/signup/"' in text(client.get(LOGIN))
    response = client.post(SIGNUP, GOOD_SIGNUP)
    assert response.status_code == 302
    user = User.objects.get(username="nia")
    assert user.role == Role.ANALYST
    assert user.has_perm("predictions.add_prediction")
    assert client.session["_auth_user_id"] == str(user.pk)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"password2": "river-bank-82"}, "password2", "The two passwords differ"),
        ({"password1": "password", "password2": "password"}, "password1", "too common"),
        ({"email": "nope"}, "email", "Enter a valid email address."),
        ({"username": "Ana"}, "username", "That username is taken."),
        ({"username": ""}, "username", "This field is required."),
    ],
)
def test_signup_explains_bad_input_at_the_field(client, settings, person, change, field, message):
    settings.ALLOW_SIGNUP = True
    response = client.post(SIGNUP, {**GOOD_SIGNUP, **change})
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert f'id="id_{field}_error"' in page
    assert User.objects.count() == 1


# --- profile --------------------------------------------------------------------------------

PROFILE = "/accounts/profile/"


def test_profile_needs_sign_in(client):
    assert client.get(PROFILE).url.startswith(LOGIN)


def test_profile_shows_username_role_last_login_and_links(signed_in, person):
    user_set_role(user=person, role=Role.AUDITOR)
    User.objects.filter(pk=person.pk).update(last_login=timezone.now())
    page = text(signed_in.get(PROFILE))
    assert "<dd>ana</dd>" in page
    assert "Auditor" in page
    assert "never" not in page.split("Last sign-in")[1][:80]
    assert 'href="/accounts/password/change/"' in page
    assert 'href="/accounts/tokens/"' in page


def test_profile_saves_name_and_email(signed_in, person):
    response = signed_in.post(
        PROFILE, {"first_name": "Ana", "last_name": "Costa", "email": "ana.costa@example.org"}
    )
    assert response.status_code == 302
    person.refresh_from_db()
    assert (person.last_name, person.email) == ("Costa", "ana.costa@example.org")
    assert messages_of(signed_in.get(PROFILE)) == ["Your profile is saved."]


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "This field is required."),
        ("nope", "Enter a valid email address."),
        ("taken@example.org", "Another account uses this e-mail address."),
    ],
)
def test_profile_explains_a_bad_email(signed_in, person, email, message):
    UserFactory(email="taken@example.org")
    response = signed_in.post(PROFILE, {"first_name": "A", "last_name": "", "email": email})
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert 'aria-describedby="id_email_error"' in page
    person.refresh_from_db()
    assert person.email == "ana@example.org"


# --- API tokens -----------------------------------------------------------------------------


def token_form(client) -> dict[str, str]:
    submission = client.get(TOKENS).context["form"]["submission"].value()
    return {"name": "nightly batch", "expires_in_days": "30", "submission": submission}


def test_tokens_page_needs_sign_in(client):
    assert client.get(TOKENS).url.startswith(LOGIN)


def test_create_token_shows_the_secret_once(signed_in, person):
    response = signed_in.post(TOKENS, token_form(signed_in))
    assert response.status_code == 302
    assert response.url == "/accounts/tokens/created/"

    response = signed_in.get(response.url)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    token = ApiToken.objects.get(user=person)
    assert token.name == "nightly batch"
    assert secret.startswith(token.token_key)
    page = text(response)
    assert f'value="{secret}"' in page
    assert 'data-copy-target="token-secret"' in page
    assert "js/copy-token.js" in page

    # The secret works against the API.
    api = signed_in.get("/api/v1/auth/tokens/", headers={"authorization": f"Token {secret}"})
    assert api.status_code == 200

    # A second visit shows it no more.
    again = signed_in.get("/accounts/tokens/created/", follow=True)
    assert secret not in text(again)
    assert "shown only once" in text(again)


def test_sending_the_same_form_twice_creates_one_token(signed_in, person):
    form = token_form(signed_in)
    assert signed_in.post(TOKENS, form).status_code == 302
    response = signed_in.post(TOKENS, form, follow=True)
    assert ApiToken.objects.filter(user=person).count() == 1
    assert "already sent, so no second token was created" in text(response)
    # A fresh form creates a second one on purpose.
    assert signed_in.post(TOKENS, token_form(signed_in)).status_code == 302
    assert ApiToken.objects.filter(user=person).count() == 2


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"name": ""}, "name", "This field is required."),
        ({"expires_in_days": "0"}, "expires_in_days", "greater than or equal to 1"),
        ({"expires_in_days": "31"}, "expires_in_days", "less than or equal to 30"),
        ({"expires_in_days": "soon"}, "expires_in_days", "Enter a whole number."),
    ],
)
def test_create_token_explains_bad_input(signed_in, settings, change, field, message):
    settings.API_TOKEN_MAX_TTL_DAYS = 30
    response = signed_in.post(TOKENS, {**token_form(signed_in), **change})
    assert response.status_code == 400
    page = text(response)
    assert message in page
    assert f'aria-describedby="id_{field}_helptext id_{field}_error"' in page
    assert not ApiToken.objects.exists()
    # The form can be sent again once corrected.
    fixed = {**token_form(signed_in), "expires_in_days": "5"}
    assert signed_in.post(TOKENS, fixed).status_code == 302


def test_empty_token_form_is_refused(signed_in):
    response = signed_in.post(TOKENS, {})
    assert response.status_code == 400
    assert text(response).count("This field is required.") >= 2


def test_token_list_shows_key_dates_and_expired_tokens(signed_in, person):
    fresh, _ = api_token_create(user=person, name="fresh", expires_in_days=10)
    old, _ = api_token_create(user=person, name="old", expires_in_days=1)
    ApiToken.objects.filter(pk=old.pk).update(expiry=timezone.now() - timedelta(hours=1))
    ApiToken.objects.filter(pk=fresh.pk).update(last_used_at=timezone.now())
    api_token_create(user=UserFactory(), name="someone else's", expires_in_days=10)
    response = signed_in.get(TOKENS)
    page = text(response)
    assert f"<code>{fresh.token_key}…</code>" in page
    assert f"<code>{old.token_key}…</code>" in page
    assert "someone else" not in page
    assert page.count('class="badge expired-badge">expired<') == 1
    assert '<tr class="expired">' in page
    row_old = page[page.index(old.token_key) - 300 : page.index(old.token_key)]
    assert "expired" in row_old
    assert "never" in page  # the old one was never used


def test_revoke_asks_then_revokes(signed_in, person):
    token, _ = api_token_create(user=person, name="ci", expires_in_days=10)
    url = f"/accounts/tokens/{token.token_key}/revoke/"
    response = signed_in.get(url)
    assert response.status_code == 200
    assert "Revoke “ci”?" in text(response)
    assert ApiToken.objects.filter(pk=token.pk).exists()

    response = signed_in.post(url, follow=True)
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert any("Revoked the token “ci”" in m for m in messages_of(response))


def test_someone_elses_token_is_404(signed_in):
    other, _ = api_token_create(user=UserFactory(), name="theirs", expires_in_days=10)
    url = f"/accounts/tokens/{other.token_key}/revoke/"
    assert signed_in.get(url).status_code == 404
    response = signed_in.post(url)
    assert response.status_code == 404
    assert "Page not found" in text(response)
    assert ApiToken.objects.filter(pk=other.pk).exists()
    assert signed_in.post("/accounts/tokens/fs_nosuchkey/revoke/").status_code == 404
