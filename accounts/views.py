"""Pages for sign-up, the profile, API tokens and the password-reset link."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.sites.shortcuts import get_current_site
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.forms import (
    PasswordChangeWithTokensForm,
    ProfileForm,
    SignUpForm,
    TokenCreateForm,
    add_application_error,
)
from accounts.http import AuthenticatedHttpRequest
from accounts.selectors import api_token_get, api_token_list
from accounts.services import (
    api_token_create,
    api_token_revoke,
    api_token_revoke_all,
    password_reset_request,
    user_lockout_clear,
    user_sign_up,
    user_update,
)
from accounts.throttles import PasswordResetThrottle
from floodsite.exceptions import ApplicationError

# The new token's secret waits here between the POST and the page that shows it once.
SESSION_NEW_TOKEN = "accounts.new_token"  # noqa: S105 (a session key)
# How long a token form's submission id is remembered to refuse a second submit of it.
SUBMISSION_TTL_SECONDS = 24 * 3600


class InvalidInputIs400:
    """Mixin for Django's auth views: a form with errors is answered with 400, not 200."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response


class LoginView(InvalidInputIs400, auth_views.LoginView):
    def get_context_data(self, **kwargs):
        # Read per request: sign-up can be switched on without touching the URL conf.
        return {**super().get_context_data(**kwargs), "allow_signup": settings.ALLOW_SIGNUP}


class PasswordChangeView(InvalidInputIs400, auth_views.PasswordChangeView):
    """Django's password change; the box ticked by default also revokes every API token."""

    form_class = PasswordChangeWithTokensForm

    def form_valid(self, form):
        response = super().form_valid(form)
        if form.cleaned_data["revoke_tokens"]:
            revoked = api_token_revoke_all(user=form.user)
            if revoked:
                was = "API token was" if revoked == 1 else "API tokens were"
                messages.success(self.request, f"{revoked} {was} revoked.")
            else:
                messages.info(self.request, "You had no API tokens to revoke.")
        else:
            messages.info(self.request, "Your API tokens are not affected.")
        return response


class PasswordResetView(InvalidInputIs400, auth_views.PasswordResetView):
    """The same answer, in the same time, whether or not an account has the address.

    The view only queues the mail (the task looks the address up and talks to the mail
    server), after two throttles: one per client and one per typed address.
    """

    def form_valid(self, form):
        email = form.cleaned_data["email"]
        for throttle, whose in (
            (PasswordResetThrottle(), "from your address"),
            (PasswordResetThrottle(email=email), "for this address"),
        ):
            if not throttle.check(self.request):
                minutes = max(1, round(throttle.wait() / 60))
                form.add_error(
                    None,
                    f"Too many reset requests {whose}; try again in about {minutes} minutes.",
                )
                response = self.form_invalid(form)
                response.status_code = 429
                response["Retry-After"] = str(int(throttle.wait()))
                return response
        try:
            password_reset_request(
                email=email,
                domain=get_current_site(self.request).domain,
                use_https=self.request.is_secure(),
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
            response = self.form_invalid(form)
            response.status_code = exc.status_code
            return response
        return redirect(self.get_success_url())


class PasswordResetConfirmView(InvalidInputIs400, auth_views.PasswordResetConfirmView):
    """Choosing a password from an e-mailed link also lifts a sign-in lockout."""

    def form_valid(self, form):
        response = super().form_valid(form)
        # The link proves the owner holds the mailbox, so the wrong tries before it no
        # longer need to keep them out (the lockout page sends people here).
        user_lockout_clear(username=form.user.get_username())
        return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.ALLOW_SIGNUP:
        raise Http404("Sign-up is closed: ask an administrator for an invitation.")
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = user_sign_up(
                username=data["username"], email=data["email"], password=data["password1"]
            )
        except ApplicationError as exc:
            add_application_error(form, exc)
        else:
            # Two backends are configured (axes, model); the new user signs in with the model's.
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome, {user.username}. Your account is ready.")
            return redirect("home")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    initial = {"first_name": user.first_name, "last_name": user.last_name, "email": user.email}
    form = ProfileForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            user_update(user=user, **form.cleaned_data)
        except ApplicationError as exc:
            add_application_error(form, exc)
        else:
            messages.success(request, "Your profile is saved.")
            return redirect("profile")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "accounts/profile.html",
        {"form": form, "token_count": api_token_list(user=user).count()},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's API tokens and the form that creates one."""
    if request.method == "POST":
        form = TokenCreateForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            # A double click or a resent form carries the same id; only the first one counts.
            key = f"accounts:token-form:{request.user.pk}:{data['submission']}"
            if not cache.add(key, True, SUBMISSION_TTL_SECONDS):
                messages.warning(
                    request,
                    "That form was already sent, so no second token was created. The token "
                    "from the first submit is in the list; its secret was shown only once.",
                )
                return redirect("tokens")
            try:
                token, secret = api_token_create(
                    user=request.user, name=data["name"], expires_in_days=data["expires_in_days"]
                )
            except ApplicationError as exc:
                cache.delete(key)
                add_application_error(form, exc)
            else:
                request.session[SESSION_NEW_TOKEN] = {"key": token.token_key, "secret": secret}
                return redirect("token_created")
        status = 400
    else:
        form = TokenCreateForm(initial={"submission": secrets.token_urlsafe(16)})
        status = 200
    context = {"form": form, "tokens": api_token_list(user=request.user)}
    return render(request, "accounts/tokens.html", context, status=status)


@never_cache
@login_required
def token_created(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Shows a new token's secret once: the session forgets it as the page is rendered."""
    new = request.session.pop(SESSION_NEW_TOKEN, None)
    if new is None:
        messages.info(
            request,
            "A token's secret is shown only once, right after it is created. If you lost it, "
            "revoke that token and create a new one.",
        )
        return redirect("tokens")
    try:
        token = api_token_get(user=request.user, token_key=new["key"])
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    return render(request, "accounts/token_created.html", {"token": token, "secret": new["secret"]})


@login_required
@require_http_methods(["GET", "POST"])
def token_revoke(request: AuthenticatedHttpRequest, token_key: str) -> HttpResponse:
    """GET asks for confirmation; POST revokes. Another user's token is a 404."""
    try:
        token = api_token_get(user=request.user, token_key=token_key)
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    if request.method == "POST":
        api_token_revoke(user=request.user, token_key=token_key)
        messages.success(
            request,
            f"Revoked the token “{token.name}” ({token.token_key}…). "
            "Programs using it are refused from now on.",
        )
        return redirect("tokens")
    return render(request, "accounts/token_revoke.html", {"token": token})
