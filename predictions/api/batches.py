"""API views for batch jobs: submit a CSV, follow its progress, download results, cancel."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from accounts.http import AuthenticatedRequest
from accounts.permissions import check_owner_or_permission
from accounts.roles import CANCEL_ANY_BATCH, PREDICT, VIEW_PREDICTIONS
from floodsite.rest import StrictSerializer
from predictions.batches import batch_cancel, batch_create
from predictions.models import BatchJob, BatchStatus, Source
from predictions.selectors import (
    batch_file_get,
    batch_file_name,
    batch_get,
    batch_list,
    batch_progress,
)


class BatchOut(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField()
    status = serializers.ChoiceField(choices=BatchStatus.choices)
    file_name = serializers.CharField()
    model = serializers.DictField()
    total_rows = serializers.IntegerField(allow_null=True)
    processed_rows = serializers.IntegerField()
    failed_rows = serializers.IntegerField()
    percent = serializers.FloatField()
    rows_per_second = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    results_url = serializers.URLField(allow_null=True)
    errors_url = serializers.URLField(allow_null=True)


def batch_to_dict(job: BatchJob, request: Request) -> dict[str, Any]:
    progress = batch_progress(job=job)
    finished = job.result_file and job.finished

    def url(name: str) -> str:
        return reverse(name, kwargs={"job_id": job.pk}, request=request)

    return {
        "id": str(job.pk),
        "url": url("api-batch-detail"),
        "status": job.status,
        "file_name": job.original_name,
        "model": {"name": job.model_version.name, "version": job.model_version.version},
        "total_rows": job.total_rows,
        "processed_rows": job.processed_rows,
        "failed_rows": job.failed_rows,
        "percent": progress.percent,
        "rows_per_second": progress.rows_per_second,
        "eta_seconds": progress.eta_seconds,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "results_url": url("api-batch-results") if finished else None,
        "errors_url": url("api-batch-errors") if finished else None,
    }


class BatchCollectionApi(APIView):
    """POST a CSV (multipart field `file`) to score every row; GET your jobs."""

    parser_classes = [MultiPartParser]
    required_permissions = {"GET": (VIEW_PREDICTIONS,), "POST": (PREDICT,)}

    class BatchCreateInput(StrictSerializer):
        file = serializers.FileField(help_text="CSV with one column per model input.")

    @property
    def throttle_scope(self) -> str:
        return "batch" if self.request.method == "POST" else "read"

    @extend_schema(
        operation_id="batches_create",
        request={"multipart/form-data": BatchCreateInput},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Resubmitting the same file with the same key returns the first job.",
            )
        ],
        responses={202: BatchOut},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.BatchCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = batch_create(
            owner=request.user,
            source=Source.API,
            upload=serializer.validated_data["file"],
            idempotency_key=(request.headers.get("Idempotency-Key") or "")[:255],
        )
        body = batch_to_dict(job, request)
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(operation_id="batches_list", responses={200: BatchOut(many=True)})
    def get(self, request: AuthenticatedRequest) -> Response:
        jobs = batch_list(user=request.user)[:100]
        return Response([batch_to_dict(job, request) for job in jobs])


class BatchDetailApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_PREDICTIONS,)}

    @extend_schema(operation_id="batches_retrieve", responses={200: BatchOut})
    def get(self, request: AuthenticatedRequest, job_id: str) -> Response:
        return Response(batch_to_dict(batch_get(user=request.user, job_id=job_id), request))


class BatchCancelApi(APIView):
    throttle_scope = "batch"
    required_permissions = {"POST": (VIEW_PREDICTIONS, PREDICT)}

    @extend_schema(operation_id="batches_cancel", request=None, responses={200: BatchOut})
    def post(self, request: AuthenticatedRequest, job_id: str) -> Response:
        job = batch_get(user=request.user, job_id=job_id)
        check_owner_or_permission(request.user, owner_id=job.owner_id, permission=CANCEL_ANY_BATCH)
        job = batch_cancel(job=job)
        return Response(batch_to_dict(job, request))


def _download(job: BatchJob, kind: str) -> FileResponse:
    return FileResponse(
        batch_file_get(job=job, kind=kind).open("rb"),
        as_attachment=True,
        filename=batch_file_name(job=job, kind=kind),
        content_type="text/csv",
    )


class BatchResultsApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_PREDICTIONS,)}

    @extend_schema(
        operation_id="batches_results",
        responses={(200, "text/csv"): bytes},
        description="Input columns plus probability, label and risk band, one line per row.",
    )
    def get(self, request: AuthenticatedRequest, job_id: str) -> FileResponse:
        return _download(batch_get(user=request.user, job_id=job_id), "results")


class BatchErrorsApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_PREDICTIONS,)}

    @extend_schema(
        operation_id="batches_errors",
        responses={(200, "text/csv"): bytes},
        description="One line per refused cell: row number, column and reason.",
    )
    def get(self, request: AuthenticatedRequest, job_id: str) -> FileResponse:
        return _download(batch_get(user=request.user, job_id=job_id), "errors")
