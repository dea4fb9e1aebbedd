"""predictions/audit_writer.py: every way of writing an audit row stores the same row.

The read-back tests compare against fixed expected values, and run on SQLite and on
PostgreSQL (DATABASE_URL): passing on both means both databases store the same rows.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.db import connection, models
from django.utils import timezone
from psycopg.types.json import Jsonb

from floodsite.db import GuardFailed, InsertGuard
from predictions import audit_writer, batches
from predictions.audit_writer import (
    audit_columns,
    audit_row_build,
    audit_row_insert,
    audit_rows_build_shared,
    audit_rows_copy,
    audit_rows_insert,
    audit_rows_write,
    audit_rows_write_shared,
)
from predictions.models import Outcome, Prediction

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="COPY and the prepared INSERT are PostgreSQL's"
)

UTC = datetime.UTC
WHEN = datetime.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
NAIVE = datetime.datetime(2026, 3, 4, 5, 6, 7, 891011)

# (values written, values read back) for rows covering each column's kinds of value.
SAMPLES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {
            "created_at": WHEN,
            "user_id": 7,
            "source": "api",
            "model_version_id": 3,
            "inputs": {"rainfall_mm": 12.5, "elevation_m": 4, "tiny": 1e-7, "sum": 0.1 + 0.2},
            "probability": 0.42,
            "label": "flood",
            "risk_band": "moderate",
            "explanation": {"baseline": 0.1, "factors": [{"feature": "rainfall_mm", "c": -0.3}]},
            "out_of_range": [],
            "latency_ms": 1.23456789,
            "request_id": "req-12345678",
            "client_ip": "192.0.2.10",
        },
        {
            "created_at": WHEN,
            "user_id": 7,
            "source": "api",
            "model_version_id": 3,
            "inputs": {"rainfall_mm": 12.5, "elevation_m": 4, "tiny": 1e-7, "sum": 0.1 + 0.2},
            "probability": 0.42,
            "label": "flood",
            "risk_band": "moderate",
            "explanation": {"baseline": 0.1, "factors": [{"feature": "rainfall_mm", "c": -0.3}]},
            "out_of_range": [],
            "latency_ms": 1.23456789,
            "request_id": "req-12345678",
            "client_ip": "192.0.2.10",
            "batch_id": None,
            "batch_row": None,
            "shadow_model_version_id": None,
            "shadow_probability": None,
            "shadow_risk_band": "",
            "shadow_error": "",
            "site_id": None,
            "context": None,
        },
    ),
    (
        {
            "created_at": NAIVE,  # made aware (UTC) by the field, with Django's warning
            "user_id": "8",
            "source": "web",
            "model_version_id": np.int64(3),
            "inputs": {"name with \t tab": "é\\n", "nested": {"a": [1, 2.5, None, True]}},
            "probability": np.float64(0.999),
            "label": "no_flood",
            "risk_band": "low",
            "explanation": [],
            "out_of_range": ["slope_deg", "rainfall_mm"],
            "latency_ms": 3,
            "request_id": "",
            "client_ip": "2001:DB8:0:0:0:0:0:1",
            "batch_id": "1b0c6a5e-0a7c-4ab4-9d3f-5f2b8a1c0d9e",
            "batch_row": np.int32(41),
            "shadow_model_version_id": 4,
            "shadow_probability": 0.5,
            "shadow_risk_band": "high",
            "site_id": "12",
            "context": {"station": "007", "year": 2024, "note": None, "ok": True},
        },
        {
            "created_at": WHEN,
            "user_id": 8,
            "source": "web",
            "model_version_id": 3,
            "inputs": {"name with \t tab": "é\\n", "nested": {"a": [1, 2.5, None, True]}},
            "probability": 0.999,
            "label": "no_flood",
            "risk_band": "low",
            "explanation": [],
            "out_of_range": ["slope_deg", "rainfall_mm"],
            "latency_ms": 3.0,
            "request_id": "",
            "client_ip": "2001:db8::1",
            "batch_id": uuid.UUID("1b0c6a5e-0a7c-4ab4-9d3f-5f2b8a1c0d9e"),
            "batch_row": 41,
            "shadow_model_version_id": 4,
            "shadow_probability": 0.5,
            "shadow_risk_band": "high",
            "shadow_error": "",
            "site_id": 12,
            "context": {"station": "007", "year": 2024, "note": None, "ok": True},
        },
    ),
    (
        {
            "created_at": WHEN,
            "user_id": 9,
            "source": "what_if",
            "model_version_id": 5,
            "inputs": {},
            "probability": 0.0,
            "label": "",
            "risk_band": "",
            "latency_ms": 0.5,
            "client_ip": "",  # stored as NULL
            "shadow_error": "RuntimeError: the shadow broke",
        },
        {
            "created_at": WHEN,
            "user_id": 9,
            "source": "what_if",
            "model_version_id": 5,
            "inputs": {},
            "probability": 0.0,
            "label": "",
            "risk_band": "",
            "explanation": [],
            "out_of_range": [],
            "latency_ms": 0.5,
            "request_id": "",
            "client_ip": None,
            "batch_id": None,
            "batch_row": None,
            "shadow_model_version_id": None,
            "shadow_probability": None,
            "shadow_risk_band": "",
            "shadow_error": "RuntimeError: the shadow broke",
            "site_id": None,
            "context": None,
        },
    ),
]


def _rows() -> list[Prediction]:
    return [audit_row_build(written) for written, _ in SAMPLES]


def _stored(pk: Any, *, without: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    row = Prediction.all_sources.get(pk=pk)
    return {
        field.attname: getattr(row, field.attname)
        for field in Prediction._meta.concrete_fields
        if field.attname not in without
    }


def _always(quote) -> str:
    return "SELECT 1"


def _never(quote) -> str:
    return "SELECT 1 WHERE 1 = 0"


def _write(how: str, rows: list[Prediction]) -> None:
    if how == "save":
        for row in rows:
            row.save(force_insert=True)
    elif how == "insert":
        for row in rows:
            audit_row_insert(row)
    elif how == "guarded":
        for row in rows:
            audit_row_insert(
                row, guard=InsertGuard(key="test.always", build_sql=_always, params=[])
            )
    elif how == "bulk_create":
        audit_rows_insert(rows)
    elif how == "write":  # COPY on PostgreSQL, bulk_create elsewhere
        audit_rows_write(rows)
    elif how == "copy":
        audit_rows_copy(rows)
    else:  # pragma: no cover
        raise ValueError(how)


WAYS = [
    "save",
    "insert",
    "guarded",
    "bulk_create",
    "write",
    pytest.param("copy", marks=needs_postgresql),
]


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "django-cursor"])
@pytest.mark.parametrize("how", WAYS)
@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_every_writer_stores_the_same_rows_on_every_database(db, settings, how, prepared):
    settings.DATABASE_PREPARED_STATEMENTS = prepared
    rows = _rows()
    _write(how, rows)
    for row, (_, expected) in zip(rows, SAMPLES, strict=True):
        assert _stored(row.pk) == expected
        assert not row._state.adding


def test_a_failed_guard_writes_nothing(db):
    row = _rows()[0]
    with pytest.raises(GuardFailed):
        audit_row_insert(row, guard=InsertGuard(key="test.never", build_sql=_never, params=[]))
    assert not Prediction.all_sources.filter(pk=row.pk).exists()


def _batch_scores():
    matrix = np.array([[12.5, 4.0], [0.1 + 0.2, 1e-7], [480.0, -3.25]])
    scores = SimpleNamespace(
        probability=np.array([0.125, 0.999, 0.5]),
        label=np.array(["no_flood", "flood", "flood"], dtype=object),
        risk_band=np.array(["low", "severe", "high"], dtype=object),
        out_of_range=np.array([[False, False], [False, False], [True, True]]),
    )
    return matrix, scores


def _write_batch(job: Any) -> None:
    matrix, scores = _batch_scores()
    batches._write_audit_rows(
        job=job,
        rows=np.array([2, 3, 7]),
        matrix=matrix,
        scores=scores,
        names=["rainfall_mm", "elevation_m"],
        latency_ms=1.23456789,
    )


def _job() -> Any:
    # Only the attributes the audit rows take (the table has no database foreign keys).
    return SimpleNamespace(pk=uuid.uuid4(), owner_id=7, model_version_id=3)


def test_batch_rows_are_stored_the_same_on_every_database(db):
    job = _job()
    _write_batch(job)
    stored = list(Prediction.objects.filter(batch_id=job.pk).order_by("batch_row"))
    assert [row.batch_row for row in stored] == [2, 3, 7]
    # Time-ordered ids (version 7) on every database, not only where COPY writes them.
    assert {row.id.version for row in stored} == {7}
    assert len({row.created_at for row in stored}) == 1
    expected_common = {
        "user_id": 7,
        "source": "batch",
        "model_version_id": 3,
        "explanation": [],
        "latency_ms": 1.23456789,  # as measured, on every database
        "request_id": f"batch-{job.pk}",
        "client_ip": None,
        "batch_id": job.pk,
        "shadow_model_version_id": None,
        "shadow_probability": None,
        "shadow_risk_band": "",
        "shadow_error": "",
        "site_id": None,
        "context": None,
    }
    expected = [
        {"inputs": {"rainfall_mm": 12.5, "elevation_m": 4.0}, "probability": 0.125},
        {"inputs": {"rainfall_mm": 0.1 + 0.2, "elevation_m": 1e-7}, "probability": 0.999},
        {"inputs": {"rainfall_mm": 480.0, "elevation_m": -3.25}, "probability": 0.5},
    ]
    outside = [[], [], ["rainfall_mm", "elevation_m"]]
    for row, more, out in zip(stored, expected, outside, strict=True):
        values = _stored(row.pk, without=("id", "created_at", "label", "risk_band", "batch_row"))
        assert values == {**expected_common, **more, "out_of_range": out}
    assert [row.label for row in stored] == ["no_flood", "flood", "flood"]
    assert [row.risk_band for row in stored] == ["low", "severe", "high"]


@needs_postgresql
def test_copy_writes_the_rows_bulk_create_writes(db):
    copied, inserted = _rows(), _rows()
    for row in inserted:
        row.id = uuid.uuid4()
        if row.batch_id is not None:
            row.batch_id = uuid.uuid4()  # (batch, batch_row) is unique
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Django's naive-datetime warning
        audit_rows_copy(copied)
        audit_rows_insert(inserted)
    for one, other in zip(copied, inserted, strict=True):
        differ = ("id", "batch_id")
        assert _stored(one.pk, without=differ) == _stored(other.pk, without=differ)


def _bulk_create_shared(*, count, shared, per_row, **_):
    audit_rows_insert(audit_rows_build_shared(count=count, shared=shared, per_row=per_row))


@needs_postgresql
def test_a_batch_copies_the_rows_bulk_create_would_write(db, monkeypatch):
    copied = _job()
    _write_batch(copied)
    inserted = _job()
    monkeypatch.setattr(batches, "audit_rows_write_shared", _bulk_create_shared)
    _write_batch(inserted)
    differ = ("id", "created_at", "request_id", "batch_id")
    one = Prediction.objects.filter(batch_id=copied.pk).order_by("batch_row")
    other = Prediction.objects.filter(batch_id=inserted.pk).order_by("batch_row")
    assert [_stored(row.pk, without=differ) for row in one] == [
        _stored(row.pk, without=differ) for row in other
    ]


def test_rows_sharing_values_take_each_callable_default_per_row(db):
    written, _ = SAMPLES[0]
    shared = {name: value for name, value in written.items() if name != "probability"}
    audit_rows_write_shared(count=3, shared=shared, per_row={"probability": [0.1, 0.2, 0.3]})
    stored = Prediction.objects.filter(user_id=7).order_by("probability")
    assert [row.probability for row in stored] == [0.1, 0.2, 0.3]
    assert len({row.id for row in stored}) == 3  # a new id on each row
    assert {row.client_ip for row in stored} == {"192.0.2.10"}


# --- a new column ------------------------------------------------------------------------


def test_every_writer_sends_every_concrete_field():
    assert audit_columns() == [field.column for field in Prediction._meta.concrete_fields]


@contextlib.contextmanager
def _extra_column():
    """A nullable column with a default on Prediction for one test, on the model and the table.

    Inside the test's transaction, so the table change is rolled back on both databases.
    """
    field = models.CharField(max_length=40, null=True, blank=True, default="unchecked")
    field.contribute_to_class(Prediction, "site_note")
    try:
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(Prediction._meta.db_table)
            cursor.execute(f"ALTER TABLE {table} ADD COLUMN site_note varchar(40) NULL")
        yield field
    finally:
        # Private, because Django has no public way to take a field off a model again.
        Prediction._meta.local_fields.remove(field)
        Prediction._meta._expire_cache()
        delattr(Prediction, "site_note")


@pytest.mark.parametrize("how", WAYS)
@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_a_new_nullable_column_is_written_by_every_writer(db, how):
    with _extra_column():
        assert "site_note" in audit_columns()
        rows = [audit_row_build({**written, "site_note": "gauge 3"}) for written, _ in SAMPLES]
        _write(how, rows)
        for row, (_, expected) in zip(rows, SAMPLES, strict=True):
            assert _stored(row.pk) == {**expected, "site_note": "gauge 3"}
    assert "site_note" not in audit_columns()


def test_a_batch_writes_a_new_nullable_column(db):
    with _extra_column():
        job = _job()
        _write_batch(job)
        stored = Prediction.objects.filter(batch_id=job.pk)
        assert [row.site_note for row in stored] == ["unchecked"] * 3


# --- the parameters --------------------------------------------------------------------------


def _assert_same_params(instance, fields):
    """Column by column: the same type and value as the field's own get_db_prep_save."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Django's naive-datetime warning
        expected = [
            field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields
        ]
        plan = audit_writer._plan_for(fields, connection)
        got = audit_writer._params_by(plan, instance, connection)
    assert len(got) == len(expected) == len(fields)
    for field, mine, orm in zip(fields, got, expected, strict=True):
        if type(orm) is Jsonb:
            # Same value; only the serialiser differs (orjson, see _json_bytes).
            assert type(mine) is Jsonb, field.name
            assert mine.obj == orm.obj, field.name
            assert mine.dumps is audit_writer._json_bytes, field.name
        else:
            assert type(mine) is type(orm), (field.name, mine, orm)
            assert str(mine) == str(orm), (field.name, mine, orm)
            assert mine == orm or (mine is None and orm is None), (field.name, mine, orm)


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_audit_parameters_equal_the_fields_own(db, index):
    _assert_same_params(audit_row_build(SAMPLES[index][0]), audit_writer.audit_fields())


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_ip": None},
        {"id": str(uuid.uuid4())},
        {"batch_id": uuid.uuid4(), "batch_row": 41},
        {"inputs": {}, "explanation": [], "out_of_range": ["rainfall_mm"]},
    ],
    ids=lambda overrides: ",".join(overrides),
)
def test_more_audit_parameters_equal_the_fields_own(db, overrides):
    row = audit_row_build({**SAMPLES[0][0], **overrides})
    _assert_same_params(row, audit_writer.audit_fields())


@pytest.mark.parametrize("flooded", [True, False])
def test_parameters_of_other_field_kinds_equal_the_fields_own(db, flooded, monkeypatch):
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
    _assert_same_params(outcome, Outcome._meta.concrete_fields)
