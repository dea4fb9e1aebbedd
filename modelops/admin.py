"""Admin of model operations: monitoring reports, alerts, retraining jobs, and the registry's
"Retrain from the audit log" action, added to mlcore's version admin from here."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from accounts.http import AuthenticatedHttpRequest
from accounts.models import User
from floodsite.exceptions import ApplicationError
from mlcore.admin import ModelVersionAdmin
from mlcore.models import ModelVersion
from modelops import services
from modelops.models import Alert, MonitoringReport, RetrainJob
from modelops.retrain_jobs import retrain_job_submit
from predictions.admin import ReadOnlyAdmin


@admin.register(MonitoringReport)
class MonitoringReportAdmin(ReadOnlyAdmin):
    """What each monitoring check saw; written only by the check itself."""

    list_display = ("created_at", "window_start", "window_end", "model_version", "predictions")
    list_filter = ("model_version", "created_at")
    date_hierarchy = "created_at"
    list_select_related = ("model_version",)
    readonly_fields = ("created_at", "window_start", "window_end", "model_version", "metrics")

    @admin.display(description="predictions")
    def predictions(self, report: MonitoringReport) -> int:
        return report.metrics.get("traffic", {}).get("total", 0)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are raised by checks; people only acknowledge or resolve them, via the services."""

    list_display = (
        "last_seen",
        "kind",
        "subject",
        "severity",
        "status",
        "occurrences",
        "first_seen",
    )
    list_filter = ("status", "kind", "severity", "last_seen")
    search_fields = ("subject", "message")
    readonly_fields = [field.name for field in Alert._meta.fields]
    list_select_related = ("acknowledged_by", "resolved_by")
    actions = ("acknowledge_alerts", "resolve_alerts")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge_alerts(
        self, request: AuthenticatedHttpRequest, queryset: QuerySet[Alert]
    ) -> None:
        done = 0
        for alert in queryset:
            try:
                services.alert_acknowledge(alert=alert, user=request.user)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{alert}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve_alerts(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset:
            services.alert_resolve(alert=alert, user=request.user)
        self.message_user(request, f"{queryset.count()} alert(s) resolved.", messages.SUCCESS)


class RetrainForm(forms.Form):
    name = forms.SlugField(
        max_length=100,
        help_text="Model name; its production version is the baseline and supplies the features.",
    )
    include_original = forms.BooleanField(
        required=False,
        label="Add the original training data",
        help_text="Regenerate the production model's synthetic training data and train on it "
        "together with the recorded outcomes.",
    )
    min_outcomes = forms.IntegerField(
        min_value=0,
        initial=0,
        help_text="Refuse to train on fewer recorded outcomes than this.",
    )


@admin.register(RetrainJob)
class RetrainJobAdmin(admin.ModelAdmin):
    """Retraining jobs: started here ("Retrain from the audit log"), run by a Celery worker."""

    list_display = ("__str__", "status", "progress", "step", "model_version", "created_at")
    list_filter = ("status", "name")
    readonly_fields = (
        "name",
        "include_original",
        "min_outcomes",
        "status",
        "progress",
        "step",
        "error",
        "model_version",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    @admin.display(description="progress")
    def progress(self, obj: RetrainJob) -> str:
        return format_html(
            '<progress max="100" value="{}">{} %</progress> {} %',
            obj.percent,
            obj.percent,
            obj.percent,
        )

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None):
        """ "Retrain from the audit log": queue a job and go to its progress page."""
        if not self.has_add_permission(request):
            return self.changeform_view(request, None, form_url, extra_context)
        if not isinstance(request.user, User):  # the admin site signs its users in first
            raise PermissionDenied
        initial = {"name": request.GET.get("name") or settings.FLOODSITE_MODEL_NAME}
        form = RetrainForm(request.POST if request.method == "POST" else None, initial=initial)
        if form.is_valid():
            try:
                job = retrain_job_submit(user=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                for field, reason in exc.fields.items():
                    if field in form.fields:
                        form.add_error(field, reason)
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Queued {job}.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:modelops_retrainjob_change", args=[job.pk])
                )
        return TemplateResponse(
            request,
            "admin/modelops/retrainjob/retrain_form.html",
            {
                **self.admin_site.each_context(request),
                "title": "Retrain from the audit log",
                "form": form,
                "opts": self.model._meta,
            },
        )


class RetrainingModelVersionAdmin(ModelVersionAdmin):
    """mlcore's version admin plus the action that starts a retraining job (this app's)."""

    actions = [*ModelVersionAdmin.actions, "retrain"]

    @admin.action(description="Retrain from the audit log (a Celery job with progress)")
    def retrain(self, request: AuthenticatedHttpRequest, queryset: QuerySet[ModelVersion]):
        names = set(queryset.values_list("name", flat=True))
        if len(names) != 1:
            self.message_user(request, "Select versions of one model name.", messages.ERROR)
            return None
        url = reverse("admin:modelops_retrainjob_add")
        return HttpResponseRedirect(f"{url}?name={names.pop()}")


# Registered by mlcore (an app below, which knows nothing of retraining); replaced here with
# the same admin plus the retrain action. Admin modules load in INSTALLED_APPS order.
admin.site.unregister(ModelVersion)
admin.site.register(ModelVersion, RetrainingModelVersionAdmin)
