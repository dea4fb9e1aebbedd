"""Admin for the audit log: read-only, with the filters and search an auditor needs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from predictions.models import Outcome, Prediction


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
