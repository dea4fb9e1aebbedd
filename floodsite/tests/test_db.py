"""floodsite/db.py: the audit INSERT's parameters are what the ORM would send PostgreSQL."""

from __future__ import annotations

import datetime
import uuid
import warnings

import numpy as np
import pytest
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from floodsite import db
from predictions.models import Outcome, Prediction


def _orm_params(instance):
    return [
        field.get_db_prep_save(field.pre_save(instance, True), connection)
        for field in instance._meta.local_concrete_fields
    ]


def _assert_same_params(instance):
    """Column by column: the same type and value as the field's own get_db_prep_save."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Django's naive-datetime warning
        expected = _orm_params(instance)
        got = db._postgresql_params(instance, connection)
    fields = instance._meta.local_concrete_fields
    assert len(got) == len(expected) == len(fields)
    for field, mine, orm in zip(fields, got, expected, strict=True):
        if type(orm) is Jsonb:
            # Same value; only the serialiser differs (orjson, see _json_bytes).
            assert type(mine) is Jsonb, field.name
            assert mine.obj == orm.obj, field.name
            assert mine.dumps is db._json_bytes, field.name
        else:
            assert type(mine) is type(orm), (field.name, mine, orm)
            assert str(mine) == str(orm), (field.name, mine, orm)
            assert mine == orm or (mine is None and orm is None), (field.name, mine, orm)


def _prediction(**overrides):
    values = {
        "created_at": timezone.now(),
        "user_id": 7,
        "source": "api",
        "model_version_id": 3,
        "inputs": {"rainfall_mm": 12.5, "elevation_m": 4},
        "probability": 0.42,
        "label": "flood",
        "risk_band": "medium",
        "explanation": [{"feature": "rainfall_mm", "value": 12.5, "contribution": 0.1}],
        "out_of_range": [],
        "latency_ms": 1.25,
        "request_id": "req-12345678",
        "client_ip": "192.0.2.10",
        "shadow_error": "",
    }
    values.update(overrides)
    return Prediction(**values)


needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the prepared INSERT runs on PostgreSQL only"
)


@needs_postgresql
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # Values the shortcuts leave to the field: IPv6 (normalised), an empty address (NULL),
        # a naive datetime (made aware), numpy and string numbers, a string UUID.
        {"client_ip": "2001:DB8:0:0:0:0:0:1"},
        {"client_ip": ""},
        {"client_ip": None},
        {"created_at": datetime.datetime(2026, 1, 2, 3, 4, 5)},
        {"probability": np.float64(0.25), "latency_ms": 3},
        {"user_id": "7", "model_version_id": np.int64(3)},
        {"id": str(uuid.uuid4())},
        {"batch_id": uuid.uuid4(), "batch_row": 41},
        {"batch_id": str(uuid.uuid4()), "batch_row": np.int32(2)},
        {"shadow_model_version_id": 4, "shadow_probability": 0.5, "shadow_risk_band": "low"},
        {"inputs": {}, "explanation": [], "out_of_range": ["rainfall_mm"]},
        {"inputs": None},
        {"label": "", "request_id": ""},
    ],
    ids=lambda overrides: ",".join(overrides) or "typical",
)
def test_audit_insert_parameters_equal_the_orms(overrides):
    _assert_same_params(_prediction(**overrides))


@needs_postgresql
@pytest.mark.parametrize("flooded", [True, False])
def test_parameters_of_a_model_with_other_field_kinds_equal_the_orms(flooded, monkeypatch):
    # One-to-one, boolean, text and an auto_now_add datetime (stamped at each preparation:
    # one clock reading, so both preparations stamp the same time).
    now = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: now)
    outcome = Outcome(
        prediction_id=uuid.uuid4(),
        flooded=flooded,
        observed_at=timezone.now(),
        reported_by_id=5,
        note="water at the door",
    )
    _assert_same_params(outcome)
