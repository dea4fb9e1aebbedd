"""API views for the model registry: list versions, one version's manifest, the active one,
and the edge download (ONNX + manifest) of any version."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import AuthenticatedRequest
from accounts.roles import VIEW_MODELS
from mlcore.engine.schema import FEATURE_DTYPES, FEATURE_KINDS, FEATURE_SCOPES, FeatureSpec
from mlcore.models import ModelVersion, Stage
from mlcore.selectors import (
    model_version_get,
    model_version_get_production,
    model_version_list,
    model_version_onnx_bundle,
)


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


class CategoryOut(serializers.Serializer):
    code = serializers.IntegerField()
    # DRF allows a field named like a Field attribute; its stubs type Field.label as a string.
    label = serializers.CharField()  # type: ignore[assignment]


class FeatureOut(serializers.Serializer):
    """One input of the model, as FeatureSpec.to_dict gives it."""

    name = serializers.CharField()
    dtype = serializers.ChoiceField(choices=FEATURE_DTYPES)
    kind = serializers.ChoiceField(
        choices=FEATURE_KINDS,
        help_text="number, integer, category (a code from `categories`) or cyclic (a "
        "position in a cycle of `period`, such as a month).",
    )
    scope = serializers.ChoiceField(
        choices=FEATURE_SCOPES,
        allow_null=True,
        help_text="Whether the feature describes the place or the moment; null when not said.",
    )
    unit = serializers.CharField(allow_blank=True, help_text="Empty when no unit was given.")
    description = serializers.CharField()
    minimum = serializers.FloatField(help_text="Typical range: outside it is scored and flagged.")
    maximum = serializers.FloatField()
    hard_minimum = serializers.FloatField(
        allow_null=True, help_text="Hard limits: outside them is refused; null for none."
    )
    hard_maximum = serializers.FloatField(allow_null=True)
    default = serializers.FloatField()
    group = serializers.CharField(allow_blank=True)
    categories = CategoryOut(many=True, help_text="A category's codes; empty for other kinds.")
    period = serializers.FloatField(allow_null=True, help_text="A cyclic feature's period.")


class ModelVersionDetailOut(ModelVersionOut):
    manifest = serializers.DictField(help_text="Feature schema, bands, metrics, references.")
    features = FeatureOut(
        many=True,
        help_text="The manifest's features in input order, with kinds filled in for versions "
        "registered before kinds existed.",
    )


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
        data["features"] = [
            FeatureSpec.from_dict(feature).to_dict() for feature in mv.manifest["features"]
        ]
    return data


class ModelListApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_MODELS,)}

    @extend_schema(operation_id="models_list", responses={200: ModelVersionOut(many=True)})
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response([model_version_to_dict(mv) for mv in model_version_list()])


class ModelActiveApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_MODELS,)}

    @extend_schema(operation_id="models_active", responses={200: ModelVersionDetailOut})
    def get(self, request: AuthenticatedRequest) -> Response:
        mv = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
        return Response(model_version_to_dict(mv, manifest=True))


class ModelDetailApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_MODELS,)}

    @extend_schema(operation_id="models_retrieve", responses={200: ModelVersionDetailOut})
    def get(self, request: AuthenticatedRequest, name: str, version: int) -> Response:
        mv = model_version_get(name=name, version=version)
        return Response(model_version_to_dict(mv, manifest=True))


class JsonErrorsNegotiation(BaseContentNegotiation):
    """The download answers a zip whatever Accept says; its errors are always the JSON body."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ModelOnnxApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_MODELS,)}
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        operation_id="models_onnx_download",
        summary="Download a version's ONNX model for offline scoring",
        description=(
            "A zip with `model.onnx`, `manifest.json` (feature order under `onnx_input.order`, "
            "input dtype, risk bands, `onnx_sha256`) and `SHA256SUMS`. The `X-Model-SHA256` "
            "header carries the SHA-256 of `model.onnx`; the file's hash is checked against "
            "the registry before it is sent. A version whose ONNX conversion failed the parity "
            "check has no file (409 `onnx_unavailable`); a file changed on the server is a 409 "
            "`integrity`."
        ),
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The zip; headers `X-Model-SHA256` and `Content-Disposition`.",
            ),
            (409, "application/json"): OpenApiResponse(
                {"$ref": "#/components/schemas/Error"},
                description="No ONNX file for this version, or the file fails its SHA-256.",
            ),
        },
    )
    def get(self, request: AuthenticatedRequest, name: str, version: int) -> HttpResponse:
        bundle = model_version_onnx_bundle(
            model_version=model_version_get(name=name, version=version)
        )
        response = HttpResponse(bundle.content, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{bundle.filename}"'
        response["X-Model-SHA256"] = bundle.onnx_sha256
        return response
