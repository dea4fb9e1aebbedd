"""Admin for users (role, invitations) and their API tokens (create shows the secret once)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from knox.models import AuthToken

from accounts.models import ApiToken, User
from accounts.roles import Role
from accounts.services import api_token_create, user_invitation_send, user_set_role
from floodsite.exceptions import ApplicationError


@admin.register(User)
class FloodsiteUserAdmin(UserAdmin):
    list_display = (
        "username",
        "email",
        "first_name",
        "last_name",
        "role",
        "is_active",
        "last_login",
    )
    list_filter = ("groups", "is_staff", "is_superuser", "is_active")
    actions = ["send_invitation", "make_analyst", "make_auditor", "make_admin"]

    def get_queryset(self, request):
        # User.role reads the groups; prefetching them keeps the list at two queries.
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="role")
    def role(self, obj: User) -> str:
        role = obj.role
        return role.label if role else "—"

    @admin.action(description="Send invitation e-mail", permissions=["change"])
    def send_invitation(self, request, queryset) -> None:
        sent = 0
        for user in queryset:
            try:
                user_invitation_send(user=user, invited_by=request.user, request=request)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                sent += 1
        if sent:
            self.message_user(
                request,
                f"Sent {sent} invitation e-mail{'s' if sent != 1 else ''} with a link to choose "
                "a password.",
                messages.SUCCESS,
            )

    def _set_role(self, request, queryset, role: Role) -> None:
        for user in queryset:
            user_set_role(user=user, role=role)
        self.message_user(request, f"{queryset.count()} user(s) now have the {role.label} role.")

    @admin.action(description="Set role: analyst", permissions=["change"])
    def make_analyst(self, request, queryset) -> None:
        self._set_role(request, queryset, Role.ANALYST)

    @admin.action(description="Set role: auditor", permissions=["change"])
    def make_auditor(self, request, queryset) -> None:
        self._set_role(request, queryset, Role.AUDITOR)

    @admin.action(description="Set role: admin (also staff)", permissions=["change"])
    def make_admin(self, request, queryset) -> None:
        self._set_role(request, queryset, Role.ADMIN)


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
