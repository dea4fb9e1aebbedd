"""Admin for the registry: versions with their stage history, promote and roll back."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from floodsite.exceptions import ApplicationError
from mlcore.models import ModelVersion, StageChange
from mlcore.services import model_version_promote, model_version_rollback


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Kept in the stage history with your name and the metrics.",
    )


class StageChangeInline(admin.TabularInline):
    model = StageChange
    fields = ("created_at", "from_stage", "to_stage", "changed_by", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[ModelVersion],
    *,
    action: str,
    title: str,
    perform,
) -> HttpResponse | None:
    """Ask for a reason on an intermediate page, then perform the stage change."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        try:
            result = perform(form.cleaned_data["reason"])
        except ApplicationError as exc:
            modeladmin.message_user(request, exc.message, messages.ERROR)
        else:
            modeladmin.message_user(request, f"Now in production: {result}.", messages.SUCCESS)
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
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
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
    actions = ["promote", "rollback"]

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
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]):
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
            perform=lambda reason: model_version_promote(
                model_version=mv, user=request.user, reason=reason
            ),
        )

    @admin.action(description="Roll back to the previous production version")
    def rollback(self, request: HttpRequest, queryset: QuerySet[ModelVersion]):
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
