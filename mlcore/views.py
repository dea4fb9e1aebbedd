"""Pages of the model registry: versions, one version and its ONNX zip."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from accounts.http import AuthenticatedHttpRequest
from accounts.permissions import permissions_required
from accounts.roles import VIEW_ALL_PREDICTIONS, VIEW_MODELS
from mlcore.engine.assessment import calibration_lines, split_text
from mlcore.engine.schema import Manifest
from mlcore.models import Stage
from mlcore.selectors import (
    model_version_get,
    model_version_list,
    model_version_onnx_bundle,
    stage_change_list,
)

# Held-out metrics from the manifest, in the order and with the names the pages show.
METRIC_LABELS = {
    "roc_auc": ("ROC-AUC", 3),
    "accuracy": ("Accuracy", 3),
    "brier": ("Brier score", 4),
    "log_loss": ("Log loss", 4),
    "positive_rate": ("Flooded share (test data)", 3),
    "predicted_positive_rate": ("Predicted flooded share", 3),
    "n_train": ("Training rows", 0),
    "n_test": ("Test rows", 0),
}


def _interval(bounds: Any, digits: int) -> str:
    if isinstance(bounds, list) and len(bounds) == 2:
        return f"95% interval {bounds[0]:.{digits}f} to {bounds[1]:.{digits}f}"
    return ""


def _metric_rows(
    metrics: dict[str, Any], intervals: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    intervals = intervals or {}
    rows = []
    for key, (label, digits) in METRIC_LABELS.items():
        value = metrics.get(key)
        if isinstance(value, int | float):
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "value": f"{value:,.{digits}f}",
                    "interval": _interval(intervals.get(key), digits),
                }
            )
    recall = metrics.get("recall_at_band")
    band_intervals = intervals.get("recall_at_band") or {}
    if isinstance(recall, dict):
        for band, value in recall.items():
            if isinstance(value, int | float):
                rows.append(
                    {
                        "key": f"recall_{band}",
                        "label": f"Recall at band {band}",
                        "value": f"{value:.3f}",
                        "interval": _interval(band_intervals.get(band), 3),
                    }
                )
    return rows


def _may_compare(user: Any) -> bool:
    """The comparison reads every user's predictions: auditors and admins only."""
    return bool(user.has_perm(VIEW_MODELS) and user.has_perm(VIEW_ALL_PREDICTIONS))


@login_required
@permissions_required(VIEW_MODELS)
def model_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Every registered version with its stage, key metrics and canary share (read-only)."""
    versions = list(model_version_list())
    serving = {
        stage: next((mv for mv in versions if mv.stage == stage), None)
        for stage in (Stage.PRODUCTION, Stage.SHADOW, Stage.CANARY)
    }
    return render(
        request,
        "mlcore/model_list.html",
        {
            "versions": versions,
            "production": serving[Stage.PRODUCTION],
            "shadow": serving[Stage.SHADOW],
            "canary": serving[Stage.CANARY],
        },
    )


def _reliability_chart(calibration: dict[str, Any]) -> dict[str, Any] | None:
    """Points of the reliability diagram (SVG units, 0-100 each way) for the served and, when
    calibrated, the bare model's probabilities on the test rows; None before it was recorded."""
    served = (calibration.get("reliability") or {}).get("bins")
    if not served:
        return None

    def line(bins: list[dict[str, Any]]) -> dict[str, Any]:
        points = [(100 * b["predicted"], 100 - 100 * b["observed"]) for b in bins]
        return {
            "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in points),
            "dots": [
                {"x": f"{x:.1f}", "y": f"{y:.1f}", **b}
                for (x, y), b in zip(points, bins, strict=True)
            ],
        }

    bare = (calibration.get("reliability_uncalibrated") or {}).get("bins")
    return {
        "served": line(served),
        "bare": line(bare) if bare and calibration.get("method") not in (None, "none") else None,
        "ece": calibration["reliability"].get("ece"),
    }


@login_required
@permissions_required(VIEW_MODELS)
def model_detail(request: AuthenticatedHttpRequest, name: str, version: int) -> HttpResponse:
    """One version: stage history, metrics, feature schema, and links to monitor or download."""
    mv = model_version_get(name=name, version=version)
    manifest = Manifest.from_dict(mv.manifest)
    history = [
        {"change": change, "metrics": _metric_rows(change.metrics)[:3]}
        for change in stage_change_list(model_version=mv)
    ]
    evaluation = manifest.evaluation
    context = {
        "mv": mv,
        "manifest": manifest,
        "metrics": _metric_rows(mv.metrics, evaluation.get("intervals")),
        # How the numbers were measured (absent for versions trained before it was recorded).
        "evaluation": evaluation,
        "split": split_text(evaluation["split"]) if evaluation.get("split") else "",
        "policy": manifest.label_policy,
        "roles": manifest.column_roles,
        "calibration": calibration_lines(mv.metrics, evaluation),
        "reliability": _reliability_chart(evaluation.get("calibration") or {}),
        "history": history,
        "onnx": mv.manifest.get("onnx") or {},
        # Plain links: modelops, an app above mlcore, owns the monitoring page and the shadow
        # comparison (the shadow page keeps its /models/ address).
        "monitoring_url": f"/monitoring/?model={mv.name}&version={mv.version}",
        "shadow_url": f"/models/{mv.name}/{mv.version}/shadow/",
        "may_compare": _may_compare(request.user),
    }
    return render(request, "mlcore/model_detail.html", context)


@login_required
@permissions_required(VIEW_MODELS)
def model_onnx_download(request: AuthenticatedHttpRequest, name: str, version: int) -> HttpResponse:
    """The same zip as GET /api/v1/models/{name}/{version}/onnx, for a signed-in browser."""
    bundle = model_version_onnx_bundle(model_version=model_version_get(name=name, version=version))
    response = HttpResponse(bundle.content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{bundle.filename}"'
    response["X-Model-SHA256"] = bundle.onnx_sha256
    return response
