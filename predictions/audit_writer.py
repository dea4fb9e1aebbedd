"""Writes the audit log: one Prediction row (guarded or not), many rows, and COPY for batches.

Every audit row goes through here, whatever its entry point (``Prediction.save()`` included),
and every way of writing takes its columns from ``Prediction._meta.concrete_fields`` and its
values from each field's ``get_db_prep_save``, as the ORM would. A new column on Prediction
is written by all of them without a change here.

- ``audit_row_insert``: one INSERT whose SQL is built once per database (compiling the ORM
  query was most of the CPU of a one-row write). With an ``InsertGuard`` it is
  ``INSERT ... SELECT ... WHERE EXISTS (guard)``, one statement. On PostgreSQL it runs as a
  prepared statement unless DATABASE_PREPARED_STATEMENTS is off or Django is recording
  queries (DEBUG, assertNumQueries) or has execute wrappers: those take Django's cursor, with
  the same SQL and parameters, so every tool that watches queries still sees it.
- ``audit_rows_insert``: ``bulk_create``.
- ``audit_rows_copy``: PostgreSQL's COPY, one ``write_row`` per row.
- ``audit_rows_write``: COPY on PostgreSQL, ``bulk_create`` elsewhere.
- ``audit_rows_write_shared``: the same for rows that share most values (a batch chunk), given
  as columns, so PostgreSQL's COPY needs no model instance per row.

None of them sends save signals (neither does ``bulk_create``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.db import connections, models
from psycopg.types.json import Jsonb

from floodsite.db import GuardFailed, InsertGuard
from predictions.models import Prediction

BULK_BATCH_SIZE = 2_000

# How one column's parameter is made: attname, the value types taken as they are (or through
# the adapter), the adapter, and the field for everything else.
_Entry = tuple[str, frozenset[type], Callable | None, Any]

# (vendor, guard key) -> SQL; vendor -> how each column's parameter is made. Both follow the
# model: when its fields change (a test adding one), they are built again.
_insert_sql: dict[tuple[str, str], str] = {}
_param_plans: dict[str, list[_Entry]] = {}
_built_for: list[Any] = [None]  # the Prediction._meta.concrete_fields the caches were built for
_attnames: set[str] = set()


def audit_fields() -> Sequence[models.Field]:
    """The columns every writer sends: each concrete field of Prediction, in model order."""
    fields = Prediction._meta.concrete_fields
    if fields is not _built_for[0]:
        _insert_sql.clear()
        _param_plans.clear()
        _attnames.clear()
        _attnames.update(field.attname for field in fields)
        _built_for[0] = fields
    return fields


def audit_columns() -> list[str]:
    return [str(field.column) for field in audit_fields()]


def audit_row_build(values: Mapping[str, Any]) -> Prediction:
    """``Prediction(**values)`` for values keyed by attribute name (``user_id``, not ``user``).

    The values are passed by position, in the model's field order: Django's positional path
    sets each attribute directly, where the keyword path matches every name against the
    fields first (a large share of an API prediction; docs/benchmarks.md). A field missing
    from ``values`` takes its default, as it would with keywords; an unknown name is an error.
    """
    fields = audit_fields()
    if not values.keys() <= _attnames:
        unknown = set(values).difference(field.attname for field in fields)
        raise TypeError(f"Prediction has no field {', '.join(sorted(unknown))}")
    by_position: Any = [
        values[f.attname] if f.attname in values else f.get_default() for f in fields
    ]
    return Prediction(*by_position)


# --- one row -------------------------------------------------------------------------------


def audit_row_insert(
    row: Prediction, *, guard: InsertGuard | None = None, using: str = "default"
) -> None:
    """INSERT one new audit row; with ``guard``, only while it holds (else GuardFailed).

    The check and the write are one statement, so nothing can change the guarded rows in
    between.
    """
    connection = connections[using]
    audit_fields()  # drops SQL and plans built for other fields
    sql = _insert_sql_for(connection, guard)
    params = _params(row, connection)
    if guard is not None:
        params.extend(guard.params)
    if (
        connection.vendor == "postgresql"
        and settings.DATABASE_PREPARED_STATEMENTS
        and not connection.queries_logged
        and not connection.execute_wrappers
    ):
        # What Django's cursor does around a statement, then psycopg's server-side binding
        # (Django's cursors always bind on the client, so they cannot prepare). These
        # connection methods and queries_logged/execute_wrappers are the database wrapper's
        # own (not underscored, though not in Django's reference): they are how its cursor
        # decides the same things, and a raw psycopg cursor is the only way to prepare.
        connection.validate_no_broken_transaction()
        connection.ensure_connection()
        with connection.wrap_database_errors:
            cursor: Any = _reused_cursor(connection)
            cursor.execute(sql, params, prepare=True)
            written = cursor.rowcount
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            written = cursor.rowcount
    if written != 1:
        if guard is not None:
            raise GuardFailed(guard.key)
        raise RuntimeError(f"the audit INSERT wrote {written} rows")  # pragma: no cover
    row._state.adding = False
    row._state.db = using


def _insert_sql_for(connection, guard: InsertGuard | None) -> str:
    key = (connection.vendor, guard.key if guard else "")
    sql = _insert_sql.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        fields = audit_fields()
        columns = ", ".join(quote(str(field.column)) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        table = quote(Prediction._meta.db_table)
        # Only quoted table and column names from the model go into the text.
        if guard is None:
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        else:
            condition = guard.build_sql(quote)
            sql = (
                f"INSERT INTO {table} ({columns}) SELECT {placeholders} WHERE EXISTS ({condition})"
            )
        _insert_sql[key] = sql
    return sql


def _reused_cursor(connection) -> psycopg.Cursor:
    """One psycopg cursor per database connection, kept while that connection lives.

    A cursor remembers how it converted each Python type to the wire (its dumpers); a new
    cursor per INSERT would look all of them up again. Django's connection objects belong to
    one thread, so the cursor is never shared between threads; a reconnect gets a new one.
    """
    raw = connection.connection
    cursor = getattr(connection, "_floodsite_insert_cursor", None)
    if cursor is None or cursor.closed or cursor.connection is not raw:
        cursor = psycopg.Cursor(raw)
        connection._floodsite_insert_cursor = cursor
    return cursor


# --- values --------------------------------------------------------------------------------

_SLOW = object()  # a value the field's own get_db_prep_save must prepare
_NONE = type(None)
_INTEGER_FIELDS = (
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)
_AUTO_FIELDS = (models.AutoField, models.BigAutoField, models.SmallAutoField)


def _integer(internal_type: str) -> Callable[[Any, Any], Any]:
    def adapt(value: Any, connection) -> Any:
        # The backend's own adapter, as IntegerField.get_db_prep_value calls it: psycopg's
        # sized integer types, so the server binds the column's own type.
        return connection.ops.adapt_integerfield_value(value, internal_type)

    return adapt


def _aware(value: datetime.datetime, connection) -> Any:
    # Django warns about and converts a naive datetime when USE_TZ is on; let it.
    if settings.USE_TZ and value.utcoffset() is None:
        return _SLOW
    return connection.ops.adapt_datetimefield_value(value)


def _inet(value: str, connection) -> Any:
    # An empty address is stored as NULL and IPv6 is normalised first: the field does both.
    return connection.ops.adapt_ipaddressfield_value(value) if value and ":" not in value else _SLOW


def _jsonb(value: Any, connection) -> Any:
    # What connection.ops.adapt_json_value gives, written by orjson: the standard library
    # spends tens of µs per row formatting floats.
    return Jsonb(value, dumps=_json_bytes)


def _shortcut(field: Any) -> tuple[frozenset[type], Callable | None] | None:
    """The value types whose PostgreSQL parameter this field's get_db_prep_save is known to
    give, and how (None: the value itself); None for a field that always takes the field's way.

    Only Django's own field classes (never a subclass, which may prepare values its own way),
    only the exact types the field passes through unchanged, and None only where it maps to
    NULL. predictions/tests/test_audit_writer.py checks them against get_db_prep_save.
    """
    kind = type(field)
    if kind is models.ForeignKey:
        target = type(field.target_field)
        if target in _AUTO_FIELDS:
            return frozenset({int, _NONE}), None
        if target is models.UUIDField:
            return frozenset({uuid.UUID, _NONE}), None
        return None
    if kind in (models.CharField, models.TextField):
        return frozenset({str, _NONE}), None
    if kind is models.FloatField:
        return frozenset({float, _NONE}), None
    if kind is models.BooleanField:
        return frozenset({bool, _NONE}), None
    if kind is models.UUIDField:
        return frozenset({uuid.UUID, _NONE}), None
    if kind in _INTEGER_FIELDS:
        return frozenset({int, _NONE}), _integer(field.get_internal_type())
    if kind is models.DateTimeField and not (field.auto_now or field.auto_now_add):
        return frozenset({datetime.datetime, _NONE}), _aware
    if kind is models.GenericIPAddressField:
        return frozenset({str, _NONE}), _inet
    if kind is models.JSONField and field.encoder is None:
        return frozenset({dict, list}), _jsonb
    return None


def _plan(connection) -> list[_Entry]:
    plan = _param_plans.get(connection.vendor)
    if plan is None:
        plan = _plan_for(audit_fields(), connection)
        _param_plans[connection.vendor] = plan
    return plan


def _plan_for(fields: Iterable[Any], connection) -> list[_Entry]:
    plan = []
    for field in fields:
        # The shortcuts are what PostgreSQL's adapters give; elsewhere every value goes
        # through its field.
        shortcut = _shortcut(field) if connection.vendor == "postgresql" else None
        types, adapt = shortcut if shortcut is not None else (frozenset(), None)
        plan.append((field.attname, types, adapt, field))
    return plan


def _params(row: Prediction, connection) -> list[Any]:
    """One row's parameters, column by column as ``field.get_db_prep_save`` gives them."""
    return _params_by(_plan(connection), row, connection)


def _params_by(plan: list[_Entry], instance: Any, connection) -> list[Any]:
    """Preparing a value through the field's methods is costly per column (IP validation,
    naive-datetime checks, JSON wrappers), although for the plain values a row
    usually holds the result is the value itself or a fixed wrapper. So on PostgreSQL each
    column takes those values directly and hands anything else to its field.
    """
    params = []
    for attname, types, adapt, field in plan:
        value = getattr(instance, attname)
        if type(value) in types:
            if adapt is not None and value is not None:
                value = adapt(value, connection)
            if value is not _SLOW:
                params.append(value)
                continue
        param = field.get_db_prep_save(field.pre_save(instance, True), connection)
        if type(param) is Jsonb and param.dumps is json.dumps:
            param = Jsonb(param.obj, dumps=_json_bytes)
        params.append(param)
    return params


def _json_bytes(value: Any) -> bytes:
    """JSON for a jsonb parameter; PostgreSQL stores the same value json.dumps would give."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


# --- many rows -----------------------------------------------------------------------------


def audit_rows_insert(rows: Sequence[Prediction], *, using: str = "default") -> None:
    """INSERT new audit rows with the ORM's ``bulk_create`` (every concrete field)."""
    Prediction.all_sources.using(using).bulk_create(rows, batch_size=BULK_BATCH_SIZE)


def audit_rows_copy(
    rows: Iterable[Prediction], *, using: str = "default", synchronous_commit: bool = True
) -> None:
    """COPY new audit rows into PostgreSQL: every concrete field, values as the fields give.

    ``synchronous_commit=False`` lets the surrounding transaction commit without waiting for
    its WAL flush (``SET LOCAL``, this transaction only): for writes that are safe to redo.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise NotImplementedError("COPY is PostgreSQL's; use audit_rows_write")
    with _copy(connection, synchronous_commit) as copy:
        for row in rows:
            copy.write_row(_params(row, connection))
            # As bulk_create leaves them: saved, in this database.
            row._state.adding = False
            row._state.db = using


@contextlib.contextmanager
def _copy(connection, synchronous_commit: bool) -> Iterator[Any]:
    """A COPY into the audit table of every concrete field, in model order."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in audit_columns())  # drops stale plans
    # Only quoted table and column names from the model go into the text.
    sql = f"COPY {quote(Prediction._meta.db_table)} ({columns}) FROM STDIN"
    with connection.cursor() as cursor:
        if not synchronous_commit:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        with cursor.copy(sql) as copy:
            yield copy


def audit_rows_write(
    rows: Sequence[Prediction], *, using: str = "default", synchronous_commit: bool = True
) -> None:
    """Many new audit rows: COPY on PostgreSQL, ``bulk_create`` elsewhere."""
    if not rows:
        return
    if connections[using].vendor == "postgresql":
        audit_rows_copy(rows, using=using, synchronous_commit=synchronous_commit)
    else:
        audit_rows_insert(rows, using=using)


# --- many rows sharing most values (batches) ------------------------------------------------


def audit_rows_write_shared(
    *,
    count: int,
    shared: Mapping[str, Any],
    per_row: Mapping[str, Sequence[Any]],
    using: str = "default",
    synchronous_commit: bool = True,
) -> None:
    """``count`` new audit rows: ``shared`` on every row, ``per_row[name][i]`` on row ``i``.

    Values are keyed by attribute name; a field in neither takes its default, called per row
    when it is callable (a new id for each). On PostgreSQL the rows are COPYed without a model
    instance each: shared values are prepared once, per-row values one by one, each by its
    field as ``audit_rows_copy`` would (a per-row value skips the field's ``pre_save``, which
    Prediction's fields do not use). Elsewhere they are built and ``bulk_create``d.
    """
    if not count:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        audit_rows_insert(audit_rows_build_shared(count=count, shared=shared, per_row=per_row))
        return
    if any(len(values) != count for values in per_row.values()):
        raise ValueError(f"every per-row column needs {count} values")
    template = audit_row_build({**shared, **{name: None for name in per_row}})
    template_params = _params(template, connection)
    varying: list[tuple[int, Sequence[Any], _Entry]] = []
    for index, entry in enumerate(_plan(connection)):
        field = entry[3]
        if field.attname in per_row:
            varying.append((index, per_row[field.attname], entry))
        elif field.attname not in shared and callable(field.default):
            varying.append((index, [field.get_default() for _ in range(count)], entry))
    with _copy(connection, synchronous_commit) as copy:
        params = list(template_params)
        for i in range(count):
            for index, values, entry in varying:
                params[index] = _param(entry, values[i], connection)
            copy.write_row(params)


def audit_rows_build_shared(
    *, count: int, shared: Mapping[str, Any], per_row: Mapping[str, Sequence[Any]]
) -> list[Prediction]:
    """The Prediction instances ``audit_rows_write_shared`` writes, one per row."""
    if any(len(values) != count for values in per_row.values()):
        raise ValueError(f"every per-row column needs {count} values")
    return [
        audit_row_build({**shared, **{name: values[i] for name, values in per_row.items()}})
        for i in range(count)
    ]


def _param(entry: _Entry, value: Any, connection) -> Any:
    """One value's parameter, as ``_params_by`` makes it for a column of an instance."""
    _, types, adapt, field = entry
    if type(value) in types:
        if adapt is not None and value is not None:
            value = adapt(value, connection)
        if value is not _SLOW:
            return value
    param = field.get_db_prep_save(value, connection)
    if type(param) is Jsonb and param.dumps is json.dumps:
        param = Jsonb(param.obj, dumps=_json_bytes)
    return param
