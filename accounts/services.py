"""Writes on accounts: users and their roles, invitations, sign-up, profile, API tokens."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import structlog
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sites.shortcuts import get_current_site
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from knox.settings import knox_settings

from accounts.models import ApiToken, User
from accounts.roles import ADMIN_APPS, ROLE_PERMISSIONS, Role
from floodsite.exceptions import ApplicationError

logger = structlog.get_logger(__name__)


def role_sync(*, using: str = "default") -> None:
    """Create the role groups and give each exactly the permissions accounts.roles lists."""
    permissions = Permission.objects.using(using)
    for role in Role:
        group, _ = Group.objects.using(using).get_or_create(name=role.value)
        if role == Role.ADMIN:
            group.permissions.set(permissions.filter(content_type__app_label__in=ADMIN_APPS))
            continue
        wanted = Q(pk__in=[])
        for perm in ROLE_PERMISSIONS[role]:
            app_label, codename = perm.split(".")
            wanted |= Q(content_type__app_label=app_label, codename=codename)
        group.permissions.set(permissions.filter(wanted))


@transaction.atomic
def user_set_role(*, user: User, role: str) -> User:
    """Put ``user`` in exactly one role group; admins are also staff (they use Django admin)."""
    if role not in Role.values:
        raise ApplicationError(
            f"Unknown role {role!r}.", fields={"role": f"must be one of {', '.join(Role.values)}"}
        )
    try:
        group = Group.objects.get(name=role)
    except Group.DoesNotExist:
        # Only a database that skipped `migrate` lacks the groups.
        raise ApplicationError(
            f"The role {role!r} is not set up; run `manage.py migrate`.",
            code="roles_missing",
            status_code=500,
        ) from None
    user.groups.remove(*Group.objects.filter(name__in=Role.values).exclude(pk=group.pk))
    user.groups.add(group)
    staff = role == Role.ADMIN or user.is_superuser
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    return user


@transaction.atomic
def user_create_first_admin(*, username: str = "admin", email: str = "") -> tuple[User, str] | None:
    """Create a superuser in the admin role with a random password when no user exists yet.

    Returns the user and the password (to be shown once), or None when any user exists,
    so running the setup again never adds accounts or resets passwords.
    """
    if User.objects.select_for_update().exists():
        return None
    password = secrets.token_urlsafe(15)
    user = User.objects.create_superuser(username=username, email=email, password=password)
    user_set_role(user=user, role=Role.ADMIN)
    return user, password


def _check_email(email: str, *, user: User | None = None) -> str:
    email = User.objects.normalize_email(email.strip())
    try:
        validate_email(email)
    except ValidationError:
        raise ApplicationError(
            "Enter a valid e-mail address.", fields={"email": "not a valid e-mail address"}
        ) from None
    # Password-reset links go to every account with the address, so one address, one account.
    others = User.objects.filter(email__iexact=email)
    if user is not None:
        others = others.exclude(pk=user.pk)
    if others.exists():
        raise ApplicationError(
            "Another account uses this e-mail address.",
            fields={"email": "already used by another account"},
        )
    return email


def _check_username(username: str) -> str:
    username = User.normalize_username(username.strip())
    if not username:
        raise ApplicationError("Choose a username.", fields={"username": "required"})
    try:
        User._meta.get_field("username").run_validators(username)
    except ValidationError as exc:
        raise ApplicationError(
            "The username is not valid.", fields={"username": " ".join(exc.messages)}
        ) from None
    if User.objects.filter(username__iexact=username).exists():
        raise ApplicationError(
            "That username is taken.", fields={"username": "already taken; choose another"}
        )
    return username


@transaction.atomic
def user_sign_up(*, username: str, email: str, password: str) -> User:
    """Self sign-up (only when ALLOW_SIGNUP): a new active user in the analyst role."""
    if not settings.ALLOW_SIGNUP:
        raise ApplicationError("Sign-up is closed.", code="not_found", status_code=404)
    user = User(username=_check_username(username), email=_check_email(email))
    user.set_password(password)
    user.save()
    return user_set_role(user=user, role=Role.ANALYST)


def user_update(*, user: User, first_name: str, last_name: str, email: str) -> User:
    """Change the name and e-mail address a user can edit on their profile page."""
    user.first_name = first_name.strip()
    user.last_name = last_name.strip()
    user.email = _check_email(email, user=user)
    user.save(update_fields=["first_name", "last_name", "email"])
    return user


def user_lockout_clear(*, username: str) -> None:
    """Forget the failed sign-ins of ``username`` (after the owner proved it by e-mail)."""
    axes_reset(username=username)


def password_reset_request(*, email: str, domain: str, use_https: bool) -> None:
    """Queue the reset mail for ``email``: the same work whether or not an account has it.

    The lookup and the mail server's round trip happen in the task, so the answer neither
    waits on SMTP nor takes longer for an address that exists. A broker that cannot take the
    task is a 503 (alike for every address), never a page saying a mail is on its way.
    """
    from accounts.tasks import password_reset_mail_task

    try:
        password_reset_mail_task.apply_async(
            kwargs={"email": email, "domain": domain, "use_https": use_https}, retry=False
        )
    except Exception as exc:  # the broker's client raises several types for "unreachable"
        logger.error("password_reset_queue_unavailable", error=str(exc)[:200])
        raise ApplicationError(
            "Reset e-mails cannot be sent right now; try again in a moment.",
            code="queue_unavailable",
            status_code=503,
        ) from exc


def password_reset_mail_send(*, email: str, domain: str, use_https: bool) -> None:
    """Mail a reset link to each active account with ``email`` that has a usable password.

    Django's own form does the choosing and the mail (a failed send is logged there); nothing
    is sent for an address no account has.
    """
    form = PasswordResetForm({"email": email})
    if form.is_valid():
        form.save(domain_override=domain, use_https=use_https)


def _site(request: HttpRequest | None, base_url: str | None) -> dict[str, str]:
    if request is not None:
        site = get_current_site(request)
        protocol = "https" if request.is_secure() else "http"
        return {"domain": site.domain, "site_name": site.name, "protocol": protocol}
    parts = urlsplit(base_url or "")
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ApplicationError(
            "Say where the site is served, e.g. https://floodsite.example.org.",
            fields={"base_url": "must be an http(s) address"},
        )
    return {"domain": parts.netloc, "site_name": parts.netloc, "protocol": parts.scheme}


def user_invitation_send(
    *,
    user: User,
    invited_by: User | None,
    request: HttpRequest | None = None,
    base_url: str | None = None,
) -> None:
    """E-mail ``user`` a one-time link to choose a password; a failed send raises.

    The address the link points at comes from ``request`` or, outside a request, ``base_url``.
    """
    if not user.email:
        raise ApplicationError(
            f"{user.username} has no e-mail address.", fields={"email": "required"}
        )
    if not user.is_active:
        raise ApplicationError(
            f"{user.username} is inactive; activate the account first.",
            fields={"is_active": "must be on"},
        )
    context = {
        **_site(request, base_url),
        "email": user.email,
        "user": user,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
        "invited_by": invited_by,
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86_400),
    }
    # The link is Django's password-reset link (same token and confirm page), but the mail is
    # sent here: PasswordResetForm skips users without a usable password, which invited users
    # are, and it logs a failed send instead of raising, which an inviter needs to know about.
    subject = "".join(render_to_string("registration/invitation_subject.txt", context).splitlines())
    body = render_to_string("registration/invitation_email.txt", context)
    EmailMessage(subject, body, to=[user.email]).send()


def user_invite(
    *,
    username: str,
    email: str,
    role: str,
    invited_by: User | None,
    request: HttpRequest | None = None,
    base_url: str | None = None,
    dry_run: bool = False,
) -> User:
    """Create a user without a password in ``role`` and e-mail them a link to choose one.

    With ``dry_run`` every check runs and nothing is kept or sent; the returned user is unsaved.
    """
    if role not in Role.values:
        raise ApplicationError(
            f"Unknown role {role!r}.", fields={"role": f"must be one of {', '.join(Role.values)}"}
        )
    _site(request, base_url)  # refuse a bad address before creating anyone
    with transaction.atomic():
        user = User(username=_check_username(username), email=_check_email(email))
        user.set_unusable_password()
        user.save()
        user_set_role(user=user, role=role)
        if dry_run:
            transaction.set_rollback(True)
            return user
        # Sent inside the transaction: when the mail server refuses, no half-invited account
        # is left behind and the invitation can simply be tried again.
        user_invitation_send(user=user, invited_by=invited_by, request=request, base_url=base_url)
    return user


def api_token_create(
    *, user: User, name: str, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a named token; the secret is returned once and only its digest is stored."""
    max_days = settings.API_TOKEN_MAX_TTL_DAYS
    days = expires_in_days if expires_in_days is not None else knox_settings.TOKEN_TTL.days
    if not 1 <= days <= max_days:
        raise ApplicationError(
            f"A token lives between 1 and {max_days} days.",
            fields={"expires_in_days": f"must be between 1 and {max_days}"},
        )
    name = name.strip()
    if not name:
        raise ApplicationError("Give the token a name.", fields={"name": "required"})
    token, secret = ApiToken.objects.create(user=user, expiry=timedelta(days=days), name=name)
    return token, secret


def api_token_revoke_all(*, user: User) -> int:
    """Revoke every API token of ``user`` (after a password change); returns how many."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


def api_token_revoke(*, user: User, token_key: str) -> None:
    """Revoke one of ``user``'s tokens; someone else's token is reported as not found."""
    deleted, _ = ApiToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise ApplicationError("No such token.", code="not_found", status_code=404)
