"""Admin for the audit log: read-only, with the filters and search an auditor needs."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from floodsite.exceptions import ApplicationError
from predictions import monitoring
from predictions.models import Alert, MonitoringReport, Outcome, Prediction


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
    def acknowledge_alerts(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset:
            try:
                monitoring.alert_acknowledge(alert=alert, user=request.user)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{alert}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve_alerts(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        for alert in queryset:
            monitoring.alert_resolve(alert=alert, user=request.user)
        self.message_user(request, f"{queryset.count()} alert(s) resolved.", messages.SUCCESS)
