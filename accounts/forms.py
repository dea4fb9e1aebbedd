"""Forms of the accounts pages: they parse input; the services in accounts.services decide."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from knox.settings import knox_settings

from floodsite.exceptions import ApplicationError

LOGIN_ERROR_ID = "login-error"


def add_application_error(form: forms.Form, exc: ApplicationError) -> None:
    """Show a service's ApplicationError next to the fields it names (or above the form)."""
    named = [field for field in exc.fields if field in form.fields]
    if not named:
        form.add_error(None, exc.message)
    for index, field in enumerate(named):
        form.add_error(field, exc.message if index == 0 else f"{exc.fields[field]}.")


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": (
            "The username or password is wrong. Check both (they are case-sensitive) and try "
            "again; after several wrong tries signing in is paused for a while."
        ),
    }

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            # The error is about the pair, not one field: point both inputs at the message.
            for name in ("username", "password"):
                self.fields[name].widget.attrs.update(
                    {"aria-describedby": LOGIN_ERROR_ID, "aria-invalid": "true"}
                )
            raise


class PasswordChangeWithTokensForm(PasswordChangeForm):
    """Django's password change, plus revoking every API token (ticked: a password changed
    because someone else may know it should not leave their tokens working)."""

    revoke_tokens = forms.BooleanField(
        label="Also revoke all my API tokens",
        required=False,
        initial=True,
        help_text="Programs that use them stop working until you give them new tokens.",
    )


class SignUpForm(forms.Form):
    username = forms.CharField(max_length=150, widget=forms.TextInput({"autocomplete": "username"}))
    email = forms.EmailField(
        label="E-mail",
        help_text="Password-reset links are sent here.",
        widget=forms.EmailInput({"autocomplete": "email"}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput({"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput({"autocomplete": "new-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ; type the same one twice.")
        elif first:
            try:
                password_validation.validate_password(first)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class ProfileForm(forms.Form):
    first_name = forms.CharField(
        max_length=150, required=False, widget=forms.TextInput({"autocomplete": "given-name"})
    )
    last_name = forms.CharField(
        max_length=150, required=False, widget=forms.TextInput({"autocomplete": "family-name"})
    )
    email = forms.EmailField(label="E-mail", widget=forms.EmailInput({"autocomplete": "email"}))


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses the token, e.g. “nightly batch on gauge-server”.",
    )
    expires_in_days = forms.IntegerField(label="Expires in (days)", min_value=1)
    # Identifies this copy of the form, so a second submit of it creates no second token.
    submission = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read at request time: tests and operators change the limit without a restart.
        max_days = settings.API_TOKEN_MAX_TTL_DAYS
        self.fields["expires_in_days"] = forms.IntegerField(
            label="Expires in (days)",
            min_value=1,
            max_value=max_days,
            initial=min(knox_settings.TOKEN_TTL.days, max_days),
            help_text=f"Between 1 and {max_days} days.",
        )
