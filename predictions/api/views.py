"""API views for predictions and outcomes: each parses input and calls one service."""

from __future__ import annotations

from typing import Any, TypedDict

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import AuthenticatedRequest
from accounts.models import User
from accounts.roles import PREDICT, RECORD_OUTCOME, VIEW_PREDICTIONS
from floodsite.exceptions import ApplicationError
from floodsite.rest import Pagination, StrictSerializer, TextField, client_ip
from mlcore.engine.explanation import log_odds, sigmoid
from predictions.models import Outcome, Prediction, Source
from predictions.selectors import (
    PredictionFilter,
    prediction_explanation,
    prediction_get,
    prediction_list,
)
from predictions.services import (
    idempotent_call,
    outcome_create,
    prediction_create,
    prediction_create_many,
    request_fingerprint,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    pattern=r"^[\x21-\x7e]{1,255}$",  # as predictions.services.idempotent_call checks it
    description="Repeat a POST safely: the same key and body return the first response "
    "without a second audit row; the same key with another body is a 422.",
)


EXPLAIN_PARAMETER = OpenApiParameter(
    "explain",
    bool,
    description="Also compute the exact explanation: `baseline` and every input's `factors` "
    "(exact TreeSHAP for tree models, linear terms for logistic regression). Off by default "
    "because it costs far more than the prediction itself (tree models walk every leaf); "
    "without it `factors` is empty and `baseline` is null, unless the row already stores one.",
)


class FactorOut(serializers.Serializer):
    feature = serializers.CharField()
    value = serializers.FloatField()
    contribution = serializers.FloatField(
        help_text="This input's exact share of the answer on the log-odds scale: "
        "baseline.log_odds + the sum of every factor's contribution = logit(probability)."
    )
    points = serializers.FloatField(
        help_text="Probability view: the change in probability (0-1) as the factors are added "
        "in the order listed, from baseline.probability; with calibration.points they add up "
        "to the probability."
    )
    direction = serializers.ChoiceField(choices=["raises", "lowers"])


class BaselineOut(serializers.Serializer):
    log_odds = serializers.FloatField(
        help_text="The model's expected log-odds over its training data (for a random forest, "
        "the log-odds of its expected probability)."
    )
    probability = serializers.FloatField(help_text="The baseline as a probability.")


class CalibrationOut(serializers.Serializer):
    log_odds = serializers.FloatField(
        help_text="How far the model's calibration map moved the model's log-odds "
        "(baseline + factors) to the answer's: baseline.log_odds + factors + this = "
        "logit(probability)."
    )
    points = serializers.FloatField(help_text="The same step as a change in probability (0-1).")


class ModelRefOut(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()


class OutcomeOut(serializers.Serializer):
    flooded = serializers.BooleanField()
    observed_at = serializers.DateTimeField()
    note = serializers.CharField(allow_blank=True)
    reported_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class PredictionOut(serializers.Serializer):
    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    # DRF allows fields named like Field attributes (source, label); its stubs type those.
    source = serializers.ChoiceField(choices=Source.choices)  # type: ignore[assignment]
    user = serializers.CharField()
    model = ModelRefOut()
    probability = serializers.FloatField(min_value=0, max_value=1)
    label = serializers.CharField()  # type: ignore[assignment]
    risk_band = serializers.CharField()
    factors = FactorOut(
        many=True,
        help_text="Every input that moved the answer, largest first; empty when not explained "
        "(see the explain parameter).",
    )
    baseline = BaselineOut(
        allow_null=True, help_text="Where the factors start; null when not explained."
    )
    calibration = CalibrationOut(
        allow_null=True,
        help_text="The last step, for a calibrated model; null when the model is not "
        "calibrated or the answer is not explained.",
    )
    out_of_range = serializers.ListField(child=serializers.CharField())
    inputs = serializers.DictField(child=serializers.FloatField())
    site = serializers.CharField(
        allow_null=True, help_text="Code of the site the prediction is for, or null."
    )
    # DRF's metaclass takes declared fields off the class, so this does not replace the
    # serializer's own ``context``; mypy sees only the class attribute.
    context = serializers.DictField(  # type: ignore[assignment]
        allow_null=True, help_text="The context sent with the prediction, as it came, or null."
    )
    latency_ms = serializers.FloatField()
    outcome = OutcomeOut(allow_null=True)


class PredictionManyOut(serializers.Serializer):
    count = serializers.IntegerField()
    predictions = PredictionOut(many=True)


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    return {
        "flooded": outcome.flooded,
        "observed_at": outcome.observed_at.isoformat(),
        "note": outcome.note,
        "reported_by": outcome.reported_by.get_username(),
        "created_at": outcome.created_at.isoformat(),
    }


def _calibration_step(probability: float, shift: float | None) -> dict[str, float] | None:
    if shift is None:
        return None
    before = float(sigmoid(log_odds(probability) - shift))
    return {"log_odds": shift, "points": probability - before}


def prediction_to_dict(
    prediction: Prediction,
    *,
    outcome: bool = True,
    explanation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The API's view of an audit row (PredictionOut), built without serializer overhead.

    ``explanation`` overrides what the row stores (an explanation computed on request).
    """
    recorded = getattr(prediction, "outcome", None) if outcome else None
    explained = prediction.explanation if explanation is None else explanation
    # A list is a row from before explanations added up (median swaps): not shown as one.
    if not isinstance(explained, dict) or explained.get("baseline") is None:
        explained = {}
    return {
        "id": str(prediction.id),
        "created_at": prediction.created_at.isoformat(),
        "source": prediction.source,
        "user": prediction.user.get_username(),
        "model": {
            "name": prediction.model_version.name,
            "version": prediction.model_version.version,
        },
        "probability": prediction.probability,
        "label": prediction.label,
        "risk_band": prediction.risk_band,
        "factors": explained.get("factors", []),
        "baseline": {
            "log_odds": explained["baseline"],
            "probability": explained["baseline_probability"],
        }
        if explained
        else None,
        "calibration": _calibration_step(prediction.probability, explained.get("calibration")),
        "out_of_range": prediction.out_of_range,
        "inputs": prediction.inputs,
        # Read only when there is one: the hot path's rows have none and cost no query.
        "site": prediction.site.code
        if prediction.site_id is not None and prediction.site
        else None,
        "context": prediction.context,
        "latency_ms": round(prediction.latency_ms, 3),
        "outcome": outcome_to_dict(recorded) if recorded is not None else None,
    }


def idempotency_key(request: Request) -> str | None:
    return request.headers.get("Idempotency-Key")


def wants_explanation(request: Request) -> bool:
    """``?explain=1`` (or true/yes/on); 0/false/no/off or none is no; anything else a 400."""
    raw = request.query_params.get("explain", "").lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"", "0", "false", "no", "off"}:
        return False
    raise ApplicationError(
        "explain must be true or false.",
        fields={"explain": "true or false (also 1/0, yes/no, on/off)"},
    )


class _AuditContext(TypedDict):
    """What every prediction of one API request is logged with."""

    user: User
    source: str
    request_id: str
    client_ip: str | None
    explain: bool
    site_code: str | None
    context: dict[str, Any] | None


class PredictionCollectionApi(APIView):
    """POST a prediction (one or up to 1,000 at once); GET your history."""

    class PredictionCreateInput(StrictSerializer):
        inputs = serializers.DictField(required=False, help_text="Feature values by name.")
        instances = serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text="Up to 1,000 sets of feature values; all are valid or none is scored.",
        )
        site = TextField(
            required=False,
            max_length=64,
            help_text="Code of a registered site: its place values fill the inputs left out "
            "(a value given wins) and the prediction is kept as the site's. An unknown code "
            "is a 400 naming it.",
        )
        # Not the serializer's own ``context``: DRF's metaclass takes declared fields off the
        # class; mypy sees only the class attribute.
        context = serializers.DictField(  # type: ignore[assignment]
            required=False,
            help_text="Values to keep with the prediction and return beside it (an id of "
            "yours, a station, a year): text, numbers, true, false or null, never scored. "
            "At most CONTEXT_MAX_KEYS entries (20) and CONTEXT_MAX_BYTES (2048) bytes as "
            "JSON; more is a 400 naming the limit.",
        )

        def validate(self, attrs):
            given = [name for name in ("inputs", "instances") if name in attrs]
            if len(given) != 1:
                raise serializers.ValidationError(
                    {"inputs": "send exactly one of 'inputs' or 'instances'"}
                )
            return attrs

    required_permissions = {"GET": (VIEW_PREDICTIONS,), "POST": (PREDICT,)}
    # drf-spectacular documents the page envelope and the filters of the list from here.
    pagination_class = Pagination
    filter_backends = [DjangoFilterBackend]

    @property
    def throttle_scope(self) -> str:
        return "predict" if self.request.method == "POST" else "read"

    @extend_schema(
        operation_id="predictions_create",
        request=PredictionCreateInput,
        parameters=[IDEMPOTENCY_HEADER, EXPLAIN_PARAMETER],
        responses={
            201: PolymorphicProxySerializer(
                component_name="PredictionCreated",
                serializers=[PredictionOut, PredictionManyOut],
                resource_type_field_name=None,
            ),
        },
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = self.PredictionCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        common: _AuditContext = {
            "user": request.user,
            "source": Source.API,
            "request_id": getattr(request, "request_id", ""),
            "client_ip": client_ip(request),
            "explain": wants_explanation(request),
            "site_code": data.get("site"),
            "context": data.get("context"),
        }

        def perform() -> tuple[int, dict[str, Any]]:
            if "inputs" in data:
                row = prediction_create(inputs=data["inputs"], **common)
                return status.HTTP_201_CREATED, prediction_to_dict(row, outcome=False)
            rows = prediction_create_many(instances=data["instances"], **common)
            return status.HTTP_201_CREATED, {
                "count": len(rows),
                "predictions": [prediction_to_dict(row, outcome=False) for row in rows],
            }

        code, body, replayed = idempotent_call(
            user=request.user,
            key=idempotency_key(request),
            fingerprint=lambda: request_fingerprint(
                method="POST", path=request.get_full_path(), body=request.data
            ),
            perform=perform,
        )
        response = Response(body, status=code)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        operation_id="predictions_list",
        parameters=[
            OpenApiParameter("page", int, description="Page number."),
            OpenApiParameter("page_size", int, description="Rows per page (at most 500)."),
            # django-filter's schema leaves out the filter's bounds.
            OpenApiParameter(
                "model_version",
                {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                description="Version number of the model.",
            ),
        ],
        responses={200: PredictionOut(many=True)},
        filters=True,
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        filters = {key: request.query_params.get(key) for key in PredictionFilter.base_filters}
        filters = {key: value for key, value in filters.items() if value is not None}
        queryset = prediction_list(user=request.user, filters=filters)
        paginator = self.pagination_class()
        # None only without a page size, and settings give REST_FRAMEWORK one.
        page = paginator.paginate_queryset(queryset, request, view=self) or []
        return paginator.get_paginated_response([prediction_to_dict(p) for p in page])

    # drf-spectacular reads the filter parameters from here.
    filterset_class = PredictionFilter

    def get_queryset(self):
        return Prediction.objects.none()


class PredictionDetailApi(APIView):
    throttle_scope = "read"
    required_permissions = {"GET": (VIEW_PREDICTIONS,)}

    @extend_schema(
        operation_id="predictions_retrieve",
        parameters=[EXPLAIN_PARAMETER],
        responses={200: PredictionOut},
    )
    def get(self, request: AuthenticatedRequest, prediction_id: str) -> Response:
        prediction = prediction_get(user=request.user, prediction_id=prediction_id)
        explanation = (
            prediction_explanation(prediction=prediction) if wants_explanation(request) else None
        )
        return Response(prediction_to_dict(prediction, explanation=explanation))


class OutcomeCreateApi(APIView):
    """Record the observed outcome (ground truth) of a prediction; one per prediction."""

    throttle_scope = "predict"
    # On someone else's prediction outcome_create also asks for RECORD_OUTCOME_ANY.
    required_permissions = {"POST": (VIEW_PREDICTIONS, RECORD_OUTCOME)}

    class OutcomeInput(StrictSerializer):
        flooded = serializers.BooleanField()
        observed_at = serializers.DateTimeField(required=False)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(
        operation_id="predictions_outcome_create",
        request=OutcomeInput,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: OutcomeOut,
            409: OpenApiResponse(description="An outcome is already recorded."),
        },
    )
    def post(self, request: AuthenticatedRequest, prediction_id: str) -> Response:
        prediction = prediction_get(user=request.user, prediction_id=prediction_id)
        serializer = self.OutcomeInput(data=request.data)
        serializer.is_valid(raise_exception=True)

        def perform() -> tuple[int, dict[str, Any]]:
            outcome = outcome_create(
                prediction=prediction, user=request.user, **serializer.validated_data
            )
            return status.HTTP_201_CREATED, outcome_to_dict(outcome)

        code, body, _ = idempotent_call(
            user=request.user,
            key=idempotency_key(request),
            fingerprint=lambda: request_fingerprint(
                method="POST", path=request.path, body=request.data
            ),
            perform=perform,
        )
        return Response(body, status=code)
