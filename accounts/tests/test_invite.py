"""Invitations: user_invite, the admin action and the invite_user command."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_invite
from accounts.tests.factories import UserFactory
from floodsite.exceptions import ApplicationError

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https?://[^/\s]+(/accounts/password/reset/[^/\s]+/[^/\s]+/)")


def link_path(message) -> str:
    found = LINK.search(message.body)
    assert found is not None, message.body
    return found.group(1)


def test_invite_creates_a_passwordless_user_in_the_role_and_mails_a_link(mailoutbox, client):
    inviter = UserFactory(first_name="Rui")
    user = user_invite(
        username="nia",
        email="nia@example.org",
        role=Role.AUDITOR,
        invited_by=inviter,
        base_url="https://floods.example.org",
    )
    assert not user.has_usable_password()
    assert user.role == Role.AUDITOR
    (message,) = mailoutbox
    assert message.to == ["nia@example.org"]
    assert message.subject == "You are invited to floodsite"
    assert "Rui invited you" in message.body
    assert '"nia"' in message.body
    assert "https://floods.example.org/accounts/password/reset/" in message.body

    # The link leads to the set-password form; the chosen password then signs in.
    response = client.get(link_path(message), follow=True)
    assert response.status_code == 200
    assert b"Choose a password" in response.content
    form_url = response.redirect_chain[-1][0]
    response = client.post(
        form_url,
        {"new_password1": "rain-gauge-42", "new_password2": "rain-gauge-42"},
    )
    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).check_password("rain-gauge-42")

    # The link works once.
    response = client.get(link_path(message), follow=True)
    assert b"This link no longer works" in response.content


def test_invite_refuses_a_taken_username_and_sends_nothing(mailoutbox):
    UserFactory(username="nia")
    with pytest.raises(ApplicationError) as info:
        user_invite(
            username="Nia",
            email="n2@example.org",
            role=Role.ANALYST,
            invited_by=None,
            base_url="http://localhost:8000",
        )
    assert "username" in info.value.fields
    assert mailoutbox == []


@pytest.mark.parametrize("base_url", [None, "", "floods.example.org", "ftp://floods.example.org"])
def test_invite_needs_the_site_address_outside_a_request(base_url, mailoutbox):
    with pytest.raises(ApplicationError) as info:
        user_invite(
            username="nia",
            email="n@example.org",
            role="analyst",
            invited_by=None,
            base_url=base_url,
        )
    assert "base_url" in info.value.fields
    assert not User.objects.filter(username="nia").exists()


def test_invite_refuses_an_unknown_role():
    with pytest.raises(ApplicationError) as info:
        user_invite(
            username="nia",
            email="n@example.org",
            role="boss",
            invited_by=None,
            base_url="http://localhost:8000",
        )
    assert "role" in info.value.fields


def test_invite_dry_run_keeps_and_sends_nothing(mailoutbox):
    user = user_invite(
        username="nia",
        email="n@example.org",
        role="analyst",
        invited_by=None,
        base_url="http://localhost:8000",
        dry_run=True,
    )
    assert user.username == "nia"
    assert not User.objects.filter(username="nia").exists()
    assert mailoutbox == []


def test_a_refusing_mail_server_leaves_no_half_invited_account(settings):
    # Port 1 on this machine refuses connections: the mail server is "down".
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    with pytest.raises(OSError):
        user_invite(
            username="nia",
            email="n@example.org",
            role="analyst",
            invited_by=None,
            base_url="http://localhost:8000",
        )
    assert not User.objects.filter(username="nia").exists()


def test_admin_action_sends_invitations_from_the_request_host(client, admin_user, mailoutbox):
    invited = UserFactory(username="nia")
    invited.set_unusable_password()
    invited.save()
    no_email = UserFactory(username="nomail", email="")
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "send_invitation", "_selected_action": [invited.pk, no_email.pk]},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Sent 1 invitation e-mail" in text
    assert "nomail has no e-mail address" in text.lower()
    (message,) = mailoutbox
    assert message.to == [invited.email]
    assert "http://testserver/accounts/password/reset/" in message.body


def test_admin_action_is_listed_as_send_invitation_email(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/accounts/user/")
    assert b"Send invitation e-mail" in response.content


def test_invite_user_command_creates_and_mails(mailoutbox):
    inviter = UserFactory(username="rui")
    out = StringIO()
    call_command(
        "invite_user",
        "nia",
        "nia@example.org",
        role="auditor",
        invited_by="rui",
        base_url="https://floods.example.org",
        stdout=out,
    )
    assert "Invited 'nia' <nia@example.org> as auditor" in out.getvalue()
    user = User.objects.get(username="nia")
    assert user.role == Role.AUDITOR and not user.has_usable_password()
    assert "https://floods.example.org/accounts/password/reset/" in mailoutbox[0].body
    assert inviter.username in mailoutbox[0].body


def test_invite_user_command_dry_run(mailoutbox):
    out = StringIO()
    call_command("invite_user", "nia", "nia@example.org", dry_run=True, stdout=out)
    assert "Dry run: would invite 'nia' <nia@example.org> as analyst" in out.getvalue()
    assert "http://localhost:8000" in out.getvalue()
    assert not User.objects.filter(username="nia").exists()
    assert mailoutbox == []


def test_invite_user_command_reports_bad_input():
    UserFactory(username="nia")
    with pytest.raises(CommandError, match="username"):
        call_command("invite_user", "nia", "x@example.org", stdout=StringIO())
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("invite_user", "zoe", "z@example.org", "--role", "boss", stdout=StringIO())
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("invite_user", "zoe", "z@example.org", invited_by="ghost", stdout=StringIO())


def test_invite_user_command_needs_the_site_address_in_production(settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="--base-url is required"):
        call_command("invite_user", "zoe", "z@example.org", stdout=StringIO())
