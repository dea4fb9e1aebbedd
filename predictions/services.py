"""Writes on predictions: score through mlcore and log the audit row before anything returns.

Every prediction, from the web form, the API or a batch, passes through prediction_create or
prediction_create_many; both validate against the answering model's manifest (production,
or the canary for its share of users), score (and shadow-score), and insert the audit rows in
one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.permissions import check_owner_or_permission
from accounts.roles import RECORD_OUTCOME_ANY
from floodsite import metrics
from floodsite.db import InsertGuard
from floodsite.exceptions import ApplicationError
from mlcore.engine import schema
from mlcore.engine.errors import SchemaError
from mlcore.engine.inference import Prediction as Scored
from mlcore.selectors import LoadedModel, ServingSet, serving_set_get
from predictions.audit_writer import audit_row_build, audit_row_insert, audit_rows_insert
from predictions.context import context_checked
from predictions.models import (
    EXPLORATION_SOURCES,
    IdempotencyRecord,
    Outcome,
    Prediction,
    Site,
    Source,
)
from predictions.sites import site_for_code, site_inputs

logger = structlog.get_logger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Field devices' clocks drift; an observation a few minutes "ahead" is not an error.
CLOCK_SKEW = timedelta(minutes=5)


SHADOW_ERROR_MAX = 300  # Prediction.shadow_error's length


def _serving_set() -> ServingSet:
    return serving_set_get(name=settings.FLOODSITE_MODEL_NAME)


def _shadow_scores(
    serving: ServingSet, answering: LoadedModel, matrix: Any
) -> tuple[int | None, list[Scored] | None, str]:
    """The shadow version's answers for the same validated rows, or why there are none.

    Never raises: whatever the shadow does, the answering model's result stands. Scores only
    (no explanations), so the shadow costs one more backend call per request.
    """
    shadow_id = serving.shadow_version_id
    if shadow_id is None or shadow_id == answering.model_version_id:
        return None, None, ""
    if serving.shadow is None:
        reason = serving.shadow_error or "the shadow version could not be loaded"
        return shadow_id, None, reason[:SHADOW_ERROR_MAX]
    try:
        return shadow_id, serving.shadow.predictor.predict_many(matrix, explain=False), ""
    except Exception as exc:  # a broken shadow must never fail the request it shadows
        reason = f"{type(exc).__name__}: {exc}"[:SHADOW_ERROR_MAX]
        logger.warning("shadow_failed", model=serving.shadow.label, error=reason)
        return shadow_id, None, reason


def _row(
    *,
    scored: Scored,
    inputs: Mapping[str, Any],
    loaded: LoadedModel,
    user: User,
    source: str,
    latency_ms: float,
    request_id: str,
    client_ip: str | None,
    created_at: datetime,
    shadow_version_id: int | None = None,
    shadow: Scored | None = None,
    shadow_error: str = "",
    site: Site | None = None,
    context: dict[str, Any] | None = None,
) -> Prediction:
    row = audit_row_build(
        {
            "created_at": created_at,
            "user_id": user.pk,
            "source": source,
            "model_version_id": loaded.model_version.pk,
            "inputs": dict(inputs),
            "probability": scored.probability,
            "label": scored.label,
            "risk_band": scored.risk_band,
            "explanation": scored.explanation_dict(),
            "out_of_range": scored.out_of_range,
            "latency_ms": latency_ms,
            "request_id": request_id[:128],
            "client_ip": client_ip,
            "shadow_model_version_id": shadow_version_id,
            "shadow_probability": shadow.probability if shadow is not None else None,
            "shadow_risk_band": shadow.risk_band if shadow is not None else "",
            "shadow_error": shadow_error,
            "site_id": site.pk if site is not None else None,
            "context": context,
        }
    )
    # Through the relation descriptors, as keyword arguments would: the answer reads both.
    row.user = user
    row.model_version = loaded.model_version
    if site is not None:
        row.site = site
    return row


def _invalid_inputs(exc: SchemaError, site: Site | None, prefix: str = "inputs.") -> dict:
    """The service's field errors; a place value missing with a site says the site lacks it."""
    fields = {}
    for name, reason in exc.fields.items():
        if site is not None and reason == schema.REQUIRED:
            reason = f"required: site {site.code!r} has no value for it"
        fields[f"{prefix}{name}"] = reason
    return fields


def _named_inputs(loaded: LoadedModel, values: Any) -> dict[str, float]:
    """The validated values keyed by feature, as stored (numbers, never the raw strings)."""
    return {
        name: float(value)
        for name, value in zip(loaded.manifest.feature_names, values, strict=True)
    }


def prediction_create(
    *,
    user: User,
    source: str,
    inputs: Mapping[str, Any],
    request_id: str = "",
    client_ip: str | None = None,
    guard: InsertGuard | None = None,
    explain: bool = False,
    site_code: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Prediction:
    """Validate one set of inputs, score it and log the audit row.

    With a ``site_code`` the site's place values fill the inputs not given (a value given
    wins and is what the row keeps; the register is not changed) and the row references the
    site. ``context`` (plain values, within CONTEXT_MAX_KEYS and CONTEXT_MAX_BYTES) is kept
    on the row as it came, never scored.

    With ``explain`` the row also stores the exact explanation (the baseline and every
    input's contribution). It costs far more than the prediction (tree models walk every leaf),
    so only the web form and the API on request ask for it; a page showing a row without one
    computes it then (``prediction_explanation``).

    The canary answers the users in its share (sticky per user), production everyone else;
    the row names the version that answered. A shadow, when set, scores the same values and
    its answer (or its error) goes on the same row, never into the response.

    With a ``guard`` the INSERT checks it in the same statement and raises GuardFailed, having
    written nothing, when it no longer holds (the API's reused token check relies on this).
    """
    started = time.perf_counter()
    site = site_for_code(site_code) if site_code is not None else None
    kept_context = context_checked(context) if context is not None else None
    serving = _serving_set()
    loaded = serving.answering(user_id=getattr(user, "pk", None))
    if site is not None:
        inputs = site_inputs(site, loaded.manifest, inputs)
    try:
        values = schema.validate_inputs(loaded.manifest, inputs)
    except SchemaError as exc:
        raise ApplicationError(
            "Some inputs are invalid: " + ", ".join(sorted(exc.fields)) + ".",
            fields=_invalid_inputs(exc, site),
            code="invalid_input",
        ) from exc
    scored = loaded.predictor.predict_one(values, explain=explain)
    latency_ms = (time.perf_counter() - started) * 1000
    shadow_id, shadow, shadow_error = _shadow_scores(serving, loaded, values)
    row = _row(
        scored=scored,
        inputs=_named_inputs(loaded, values),
        loaded=loaded,
        user=user,
        source=source,
        latency_ms=latency_ms,
        request_id=request_id,
        client_ip=client_ip,
        created_at=timezone.now(),
        shadow_version_id=shadow_id,
        shadow=shadow[0] if shadow else None,
        shadow_error=shadow_error,
        site=site,
        context=kept_context,
    )
    # One INSERT in autocommit: the row is durable before the caller sees the answer.
    audit_row_insert(row, guard=guard)
    if source not in EXPLORATION_SOURCES:
        metrics.prediction_observed(source, loaded.label, scored.risk_band)
    return row


def what_if_create(
    *,
    user: User,
    original: Prediction,
    changes: Mapping[str, Any],
    request_id: str = "",
    client_ip: str | None = None,
) -> Prediction:
    """Score ``original``'s inputs with ``changes`` applied, logged as a what-if.

    The row keeps an audit trail of what was asked; its source keeps it out of everything
    that counts predictions (``Prediction.objects`` never returns it).
    """
    return prediction_create(
        user=user,
        source=Source.WHAT_IF,
        inputs={**original.inputs, **changes},
        request_id=request_id,
        client_ip=client_ip,
    )


def prediction_create_many(
    *,
    user: User,
    source: str,
    instances: Sequence[Mapping[str, Any]],
    request_id: str = "",
    client_ip: str | None = None,
    explain: bool = False,
    site_code: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[Prediction]:
    """Validate up to API_MAX_INSTANCES rows; all valid, or a 400 naming every bad cell.

    ``explain`` stores each row's exact explanation, as prediction_create does; a
    ``site_code`` and a ``context`` apply to every instance, as they do to one.
    """
    started = time.perf_counter()
    limit = settings.API_MAX_INSTANCES
    if not instances:
        raise ApplicationError(
            "Send at least one instance.", fields={"instances": "must not be empty"}
        )
    if len(instances) > limit:
        raise ApplicationError(
            f"At most {limit} instances per call; send {len(instances)} as a batch job instead.",
            fields={"instances": f"at most {limit} items, got {len(instances)}"},
            code="too_many_instances",
        )
    site = site_for_code(site_code) if site_code is not None else None
    kept_context = context_checked(context) if context is not None else None
    serving = _serving_set()
    loaded = serving.answering(user_id=getattr(user, "pk", None))
    if site is not None:
        instances = [
            site_inputs(site, loaded.manifest, row) if isinstance(row, Mapping) else row
            for row in instances
        ]
    checked = schema.validate_rows(loaded.manifest, instances)
    if checked.errors:
        fields: dict[str, str] = {}
        for index, column, reason in checked.errors:
            if site is not None and reason == schema.REQUIRED:
                reason = f"required: site {site.code!r} has no value for it"
            fields[f"instances[{index}].{column}" if column else f"instances[{index}]"] = reason
        raise ApplicationError(
            f"{checked.n_invalid} of {len(instances)} instances are invalid.",
            fields=fields,
            code="invalid_input",
        )
    scored = loaded.predictor.predict_many(checked.matrix, explain=explain)
    latency_ms = (time.perf_counter() - started) * 1000 / len(instances)
    shadow_id, shadow, shadow_error = _shadow_scores(serving, loaded, checked.matrix)
    now = timezone.now()
    rows = [
        _row(
            scored=result,
            inputs=_named_inputs(loaded, values),
            loaded=loaded,
            user=user,
            source=source,
            latency_ms=latency_ms,
            request_id=request_id,
            client_ip=client_ip,
            created_at=now,
            shadow_version_id=shadow_id,
            shadow=shadow[index] if shadow else None,
            shadow_error=shadow_error,
            site=site,
            context=kept_context,
        )
        for index, (result, values) in enumerate(zip(scored, checked.matrix, strict=True))
    ]
    with transaction.atomic():
        audit_rows_insert(rows)
    metrics.predictions_observed(source, loaded.label, [row.risk_band for row in rows])
    return rows


def outcome_create(
    *,
    prediction: Prediction,
    user: User,
    flooded: bool,
    observed_at: datetime | None = None,
    note: str = "",
) -> Outcome:
    """Record what was observed at a predicted site; one outcome per prediction.

    Outcomes feed accuracy, the promotion gate and retraining, so one on another user's
    prediction needs RECORD_OUTCOME_ANY (admins), even from someone who may read it.
    """
    check_owner_or_permission(user, owner_id=prediction.user_id, permission=RECORD_OUTCOME_ANY)
    if prediction.source in EXPLORATION_SOURCES:
        raise ApplicationError(
            "A what-if answer is not a prediction: record the outcome on the prediction it "
            "explored.",
            fields={"prediction": "a what-if answer, not a prediction"},
            code="not_a_prediction",
            status_code=409,
        )
    observed_at = observed_at or timezone.now()
    if observed_at > timezone.now() + CLOCK_SKEW:
        raise ApplicationError(
            "An outcome cannot be observed in the future.",
            fields={"observed_at": "must not be in the future"},
        )
    try:
        with transaction.atomic():
            return Outcome.objects.create(
                prediction=prediction,
                flooded=flooded,
                observed_at=observed_at,
                reported_by=user,
                note=note,
            )
    except IntegrityError as exc:
        raise ApplicationError(
            "An outcome is already recorded for this prediction.",
            fields={"prediction": "already has an outcome"},
            code="outcome_exists",
            status_code=409,
        ) from exc


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """SHA-256 of the method, path and canonical JSON body: same request, same fingerprint."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def idempotent_call(
    *,
    user: User,
    key: str | None,
    fingerprint: Callable[[], str],
    perform: Callable[[], tuple[int, Any]],
) -> tuple[int, Any, bool]:
    """Run ``perform`` once per (user, key); repeat calls get the first response back.

    Returns (status, body, replayed). The record is written in the same transaction as
    whatever ``perform`` writes, so a replay never stands for work that was rolled back, and a
    concurrent duplicate loses its own writes to the unique constraint and replays the winner.
    """
    if key is None:
        status, body = perform()
        return status, body, False
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApplicationError(
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            fields={"Idempotency-Key": "1 to 255 visible ASCII characters"},
        )
    fingerprint_value = fingerprint()  # hashed only when a key asks for it
    existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if existing is not None:
        return _replay(existing, fingerprint_value)
    try:
        with transaction.atomic():
            status, body = perform()
            if status >= 400:
                return status, body, False
            IdempotencyRecord.objects.create(
                user=user,
                key=key,
                fingerprint=fingerprint_value,
                status_code=status,
                response=body,
            )
    except IntegrityError:
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            raise
        return _replay(existing, fingerprint_value)
    return status, body, False


def _replay(record: IdempotencyRecord, fingerprint: str) -> tuple[int, Any, bool]:
    if record.fingerprint != fingerprint:
        raise ApplicationError(
            "This Idempotency-Key was already used with a different request.",
            fields={"Idempotency-Key": "already used with a different request body"},
            code="idempotency_key_reused",
            status_code=422,
        )
    return record.status_code, record.response, True
