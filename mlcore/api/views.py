"""API views for the model registry: list versions, one version's manifest, the active one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mlcore.models import ModelVersion, Stage
from mlcore.selectors import model_version_get, model_version_get_production, model_version_list


class ModelVersionOut(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    stage = serializers.ChoiceField(choices=Stage.choices)
    format = serializers.CharField()
    sha256 = serializers.CharField()
    onnx = serializers.BooleanField(help_text="An ONNX file passed the parity check.")
    metrics = serializers.DictField()
    created_at = serializers.DateTimeField()
    notes = serializers.CharField(allow_blank=True)


class ModelVersionDetailOut(ModelVersionOut):
    manifest = serializers.DictField(help_text="Feature schema, bands, metrics, references.")


def model_version_to_dict(mv: ModelVersion, *, manifest: bool = False) -> dict[str, Any]:
    data = {
        "name": mv.name,
        "version": mv.version,
        "stage": mv.stage,
        "format": mv.format,
        "sha256": mv.sha256,
        "onnx": bool(mv.onnx_artifact),
        "metrics": mv.metrics,
        "created_at": mv.created_at.isoformat(),
        "notes": mv.notes,
    }
    if manifest:
        data["manifest"] = mv.manifest
    return data


class ModelListApi(APIView):
    throttle_scope = "read"

    @extend_schema(operation_id="models_list", responses={200: ModelVersionOut(many=True)})
    def get(self, request: Request) -> Response:
        return Response([model_version_to_dict(mv) for mv in model_version_list()])


class ModelActiveApi(APIView):
    throttle_scope = "read"

    @extend_schema(operation_id="models_active", responses={200: ModelVersionDetailOut})
    def get(self, request: Request) -> Response:
        mv = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
        return Response(model_version_to_dict(mv, manifest=True))


class ModelDetailApi(APIView):
    throttle_scope = "read"

    @extend_schema(operation_id="models_retrieve", responses={200: ModelVersionDetailOut})
    def get(self, request: Request, name: str, version: int) -> Response:
        mv = model_version_get(name=name, version=version)
        return Response(model_version_to_dict(mv, manifest=True))
