"""OpenAPI: the prediction inputs are described by the production model's feature schema."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError

from floodsite.exceptions import ApplicationError
from mlcore.engine.schema import Manifest
from mlcore.selectors import model_version_get_production


def feature_schema(manifest: Manifest) -> dict[str, Any]:
    """JSON Schema of one set of inputs, one property per feature of the manifest."""
    properties: dict[str, Any] = {}
    for spec in manifest.features:
        unit = f" ({spec.unit})" if spec.unit else ""
        limits = (
            f" Values outside the hard limits ({spec.hard_limit_text()}) are refused."
            if spec.has_hard_limits
            else ""
        )
        properties[spec.name] = {
            "type": "integer" if spec.dtype == "int" else "number",
            "description": (
                f"{spec.description}{unit} Typical range {spec.minimum:g} to {spec.maximum:g}; "
                f"values outside it are scored and flagged in out_of_range.{limits}"
            ),
            "example": spec.default,
            "x-unit": spec.unit,
            "x-typical-minimum": spec.minimum,
            "x-typical-maximum": spec.maximum,
            "x-group": spec.group,
        }
        properties[spec.name]["x-kind"] = spec.kind
        properties[spec.name]["x-scope"] = spec.scope
        if spec.kind == "category":
            # The codes are the only values accepted; the labels say what each one means.
            properties[spec.name]["enum"] = [code for code, _ in spec.categories]
            properties[spec.name]["x-categories"] = {
                str(code): label for code, label in spec.categories
            }
            listed = ", ".join(f"{code} = {label}" for code, label in spec.categories)
            properties[spec.name]["description"] = f"{spec.description} One of: {listed}."
        if spec.kind == "cyclic":
            properties[spec.name]["x-period"] = spec.period
        # The hard limits are the schema's bounds: a value past them is a 400.
        if spec.hard_minimum is not None:
            properties[spec.name]["minimum"] = spec.hard_minimum
        if spec.hard_maximum is not None:
            properties[spec.name]["maximum"] = spec.hard_maximum
    return {
        "type": "object",
        "description": f"Feature values for model {manifest.name}.",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def add_feature_schema(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular post-processing hook: plug PredictionInputs into the request bodies."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    try:
        mv = model_version_get_production(name=settings.FLOODSITE_MODEL_NAME)
        inputs = feature_schema(Manifest.from_dict(mv.manifest))
        inputs["description"] += f" Production version: {mv.version}."
    except (ApplicationError, DatabaseError) as exc:
        reason = exc.message if isinstance(exc, ApplicationError) else "database unavailable"
        inputs = {
            "type": "object",
            "description": f"Feature values; the schema is unavailable: {reason}",
            "additionalProperties": {"type": "number"},
        }
    schemas["PredictionInputs"] = inputs
    create = schemas.get("PredictionCreateInputRequest")
    if create is not None:
        ref = {"$ref": "#/components/schemas/PredictionInputs"}
        create["properties"]["inputs"] = {**ref}
        create["properties"]["instances"]["items"] = {**ref}
        create["properties"]["instances"]["maxItems"] = settings.API_MAX_INSTANCES
        create["properties"]["instances"]["minItems"] = 1
        create["description"] = (
            "Send exactly one of `inputs` or `instances`. With `site`, the place features "
            "(x-scope: place) the site has values for may be left out of them."
        )
        if "context" in create["properties"]:
            create["properties"]["context"]["maxProperties"] = settings.CONTEXT_MAX_KEYS
            create["properties"]["context"]["additionalProperties"] = {
                "type": ["string", "number", "boolean", "null"]
            }
        create["oneOf"] = [{"required": ["inputs"]}, {"required": ["instances"]}]
    for item in result.get("paths", {}).values():
        operation = item.get("post", {})
        if operation.get("operationId") == "predictions_create" and "requestBody" in operation:
            # Neither field is required on its own, but a body with one of them is.
            operation["requestBody"]["required"] = True
    return result
