"""Admin for the registry: versions with their stage history, promote and roll back."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.http import AuthenticatedHttpRequest
from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, StageChange
from mlcore.services import (
    CANARY_PERCENT_RANGE,
    model_version_canary_start,
    model_version_canary_stop,
    model_version_promote,
    model_version_rollback,
    model_version_shadow_start,
    model_version_shadow_stop,
)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Kept in the stage history with your name and the metrics.",
    )


class PromoteForm(ReasonForm):
    force = forms.BooleanField(
        required=False,
        label="Force despite the promotion gate",
        help_text="Promote even if the candidate does worse than production on the same rows; "
        "recorded as forced, with your reason and both models' numbers.",
    )


class CanaryForm(ReasonForm):
    percent = forms.IntegerField(
        min_value=CANARY_PERCENT_RANGE[0],
        max_value=CANARY_PERCENT_RANGE[1],
        label="Share of users (%)",
        help_text="Each user always gets the same model; raising the share only adds users.",
    )


class StageChangeInline(admin.TabularInline):
    model = StageChange
    fields = ("created_at", "from_stage", "to_stage", "changed_by", "reason", "gate")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="promotion gate")
    def gate(self, obj: StageChange) -> str:
        return obj.gate_summary()


def _with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[ModelVersion],
    *,
    action: str,
    title: str,
    perform,
    form_class: type[forms.Form] = ReasonForm,
    done=None,
) -> HttpResponse | None:
    """Ask for a reason on an intermediate page, then perform the stage change.

    ``perform`` is called with the form's cleaned fields as keyword arguments.
    """
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        try:
            result = perform(**form.cleaned_data)
        except ApplicationError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            message = done(result) if done else f"Now in production: {result}."
            modeladmin.message_user(request, message, messages.SUCCESS)
        return None
    return TemplateResponse(
        request,
        "admin/mlcore/stage_change_reason.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "queryset": queryset,
            "action": action,
            "opts": modeladmin.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "stage", "format", "roc_auc", "created_by", "created_at")
    list_filter = ("name", "stage", "format")
    search_fields = ("name", "notes", "sha256")
    readonly_fields = (
        "name",
        "version",
        "artifact",
        "sha256",
        "format",
        "onnx_artifact",
        "onnx_sha256",
        "manifest",
        "stage",
        "created_by",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields, "notes")
    inlines = [StageChangeInline]
    actions = [
        "promote",
        "rollback",
        "shadow_start",
        "shadow_stop",
        "canary_start",
        "canary_stop",
    ]

    @admin.display(description="ROC-AUC")
    def roc_auc(self, obj: ModelVersion) -> str:
        value = obj.metrics.get("roc_auc")
        return f"{value:.3f}" if value is not None else "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Versions come from training (train_model), never typed in by hand.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Promote the selected version to production")
    def promote(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return None
        mv = queryset.get()
        return _with_reason(
            self,
            request,
            queryset,
            action="promote",
            title=f"Promote {mv} to production",
            perform=lambda reason, force: model_version_promote(
                model_version=mv, user=request.user, reason=reason, force=force
            ),
            form_class=PromoteForm,
        )

    @admin.action(description="Roll back to the previous production version")
    def rollback(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        names = set(queryset.values_list("name", flat=True))
        if len(names) != 1:
            self.message_user(request, "Select versions of one model name.", messages.ERROR)
            return None
        name = names.pop()
        return _with_reason(
            self,
            request,
            queryset,
            action="rollback",
            title=f"Roll {name} back to its previous production version",
            perform=lambda reason: model_version_rollback(
                name=name, user=request.user, reason=reason
            ),
        )

    def _one_version(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return None
        return queryset.get()

    @admin.action(description="Shadow: score every request next to production (not shown)")
    def shadow_start(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        mv = self._one_version(request, queryset)
        if mv is None:
            return None
        return _with_reason(
            self,
            request,
            queryset,
            action="shadow_start",
            title=f"Put {mv} in shadow",
            perform=lambda reason: model_version_shadow_start(
                model_version=mv, user=request.user, reason=reason
            ),
            done=lambda result: f"In shadow: {result}. Its answers are stored, never shown.",
        )

    @admin.action(description="Shadow: stop (back to candidate)")
    def shadow_stop(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        mv = self._one_version(request, queryset)
        if mv is None:
            return None
        return _with_reason(
            self,
            request,
            queryset,
            action="shadow_stop",
            title=f"Stop shadow scoring with {mv}",
            perform=lambda reason: model_version_shadow_stop(
                model_version=mv, user=request.user, reason=reason
            ),
            done=lambda result: f"Shadow stopped: {result} is a candidate again.",
        )

    @admin.action(description="Canary: answer a share of users (or change the share)")
    def canary_start(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        mv = self._one_version(request, queryset)
        if mv is None:
            return None
        return _with_reason(
            self,
            request,
            queryset,
            action="canary_start",
            title=f"Let {mv} answer a share of users",
            perform=lambda reason, percent: model_version_canary_start(
                model_version=mv, percent=percent, user=request.user, reason=reason
            ),
            form_class=CanaryForm,
            done=lambda result: f"Canary: {result} answers {result.canary_percent}% of users.",
        )

    @admin.action(description="Canary: roll back (production answers everyone)")
    def canary_stop(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        mv = self._one_version(request, queryset)
        if mv is None:
            return None
        return _with_reason(
            self,
            request,
            queryset,
            action="canary_stop",
            title=f"Roll back the canary {mv}",
            perform=lambda reason: model_version_canary_stop(
                model_version=mv, user=request.user, reason=reason
            ),
            done=lambda result: (
                f"Canary rolled back: production answers everyone; {result} is a candidate again."
            ),
        )


@admin.register(StageChange)
class StageChangeAdmin(admin.ModelAdmin):
    list_display = ("model_version", "from_stage", "to_stage", "changed_by", "created_at")
    list_filter = ("to_stage", "model_version__name")
    search_fields = ("reason",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
