"""Admin for the audit log (read-only, with the filters and search an auditor needs) and the
site register (checked as the pages and the API check it)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from floodsite.exceptions import ApplicationError
from predictions.models import Outcome, Prediction, Site
from predictions.sites import EDITABLE, site_values_check


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit data is looked at here, never typed in, changed or removed."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "source", "model_version", "risk_band", "probability")
    list_filter = ("source", "risk_band", "model_version", "created_at")
    search_fields = ("id", "user__username", "request_id", "client_ip")
    date_hierarchy = "created_at"
    list_select_related = ("user", "model_version")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Prediction]:
        # The whole audit trail, what-if answers included (filter by source to tell them apart).
        return Prediction.all_sources.select_related(*self.list_select_related)


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ("prediction", "flooded", "observed_at", "reported_by")
    list_filter = ("flooded", "observed_at")
    search_fields = ("prediction__id", "reported_by__username", "note")
    list_select_related = ("prediction", "reported_by")


class SiteAdminForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["code", "name", "latitude", "longitude", "notes", "features"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        values = {name: data[name] for name in EDITABLE if name in data}
        try:
            cleaned = site_values_check(values, code=None)
        except ApplicationError as exc:
            for key, reason in exc.fields.items():
                field = key.split(".", 1)[0]
                self.add_error(field if field in self.fields else None, f"{key}: {reason}")
        else:
            data.update(cleaned)
        return data


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    form = SiteAdminForm
    list_display = ("code", "name", "latitude", "longitude", "updated_at")
    search_fields = ("code", "name")
    readonly_fields = ("created_by", "created_at", "updated_at")
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Site | None = None) -> tuple:
        # The code identifies the site in files and calls: set once.
        return (*self.readonly_fields, "code") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Site, form: Any, change: bool) -> None:
        if not change and isinstance(request.user, User):  # the admin is signed-in staff
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
