"""Admin for users and their API tokens (create shows the secret once; delete revokes)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from knox.models import AuthToken

from accounts.models import ApiToken, User
from accounts.services import api_token_create

admin.site.register(User, UserAdmin)

# knox registers its own token model, which ApiToken replaces (KNOX_TOKEN_MODEL).
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


class ApiTokenAddForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(
        min_value=1, initial=90, help_text="The token stops working after this many days."
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]

    def clean_expires_in_days(self) -> int:
        days = self.cleaned_data["expires_in_days"]
        if days > settings.API_TOKEN_MAX_TTL_DAYS:
            raise forms.ValidationError(f"At most {settings.API_TOKEN_MAX_TTL_DAYS} days.")
        return days


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "token_key", "user", "created", "expiry", "last_used_at")
    list_filter = ("created", "expiry")
    search_fields = ("name", "token_key", "user__username")
    readonly_fields = ("user", "name", "token_key", "created", "expiry", "last_used_at")
    list_select_related = ("user",)
    raw_id_fields = ("user",)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "expires_in_days"]
        return list(self.readonly_fields)

    def has_change_permission(self, request, obj=None) -> bool:
        # Tokens are never edited, only created and revoked; the view page stays readable.
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def save_model(self, request, obj, form, change):
        token, secret = api_token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_in_days=form.cleaned_data["expires_in_days"],
        )
        form.instance = token
        self.message_user(
            request,
            f"Token for {token.user}: {secret} — copy it now; it is not shown again.",
            messages.WARNING,
        )
