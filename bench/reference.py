"""The naive reference endpoint `make bench` compares the product's prediction API with.

It is written on purpose the way tutorials write a model endpoint (DataFrame per request,
scikit-learn on the pickled pipeline, one ORM insert), with the same token authentication and
the same audit table, so the benchmark shows what the product's design buys over the obvious
code. It is not part of the product and never ships in its URLs.
"""

from __future__ import annotations

import time

import joblib
import pandas as pd
from django.conf import settings
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.http import AuthenticatedRequest
from mlcore.models import ModelVersion, Stage
from predictions.models import Prediction

# Tutorial style: look the production model up and unpickle it once, when the URLs load.
PRODUCTION = ModelVersion.objects.get(name=settings.FLOODSITE_MODEL_NAME, stage=Stage.PRODUCTION)
MODEL = joblib.load(PRODUCTION.artifact.path)
FEATURES = [feature["name"] for feature in PRODUCTION.manifest["features"]]
CLASS_LABELS = PRODUCTION.manifest["class_labels"]
BANDS = sorted(PRODUCTION.manifest["risk_bands"], key=lambda band: band["lower"])


class ReferencePredictionApi(APIView):
    """POST {"inputs": {...}}: score one row and log it, the straightforward way."""

    def post(self, request: AuthenticatedRequest) -> Response:
        started = time.perf_counter()
        inputs = request.data["inputs"]
        frame = pd.DataFrame([inputs], columns=FEATURES)
        probability = float(MODEL.predict_proba(frame)[0][1])
        label = CLASS_LABELS[1] if probability >= 0.5 else CLASS_LABELS[0]
        risk_band = [band["name"] for band in BANDS if probability >= band["lower"]][-1]
        # The bench sends a unique X-Request-ID; the prefix keeps these rows apart in the audit.
        request_id = "reference-" + request.headers.get("X-Request-ID", "")
        # The ORM's own INSERT, compiled per call as ``objects.create`` compiles it. Not
        # ``create``: Prediction.save goes through the product's audit writer (a prepared,
        # precompiled INSERT), which is part of what the benchmark measures the product by.
        (prediction,) = Prediction.objects.bulk_create(
            [
                Prediction(
                    user=request.user,
                    source="api",
                    model_version=PRODUCTION,
                    inputs=inputs,
                    probability=probability,
                    label=label,
                    risk_band=risk_band,
                    explanation=[],
                    out_of_range=[],
                    latency_ms=(time.perf_counter() - started) * 1000,
                    request_id=request_id[:128],
                )
            ]
        )
        return Response(
            {
                "id": str(prediction.id),
                "probability": probability,
                "label": label,
                "risk_band": risk_band,
            },
            status=201,
        )
