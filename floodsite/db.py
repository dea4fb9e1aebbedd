"""Hot statements with their SQL built once: the token lookup's SELECT and the INSERT guard.

Compiling a query is most of the CPU the ORM spends on a one-row lookup (more than the
database's own work on PostgreSQL). ``select_one_joined`` builds its SQL once per database and
converts the row with the backend's and the fields' converters, exactly as the ORM would.
``InsertGuard`` is a condition an INSERT checks in the same statement; the audit log's writer
(predictions/audit_writer.py) runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections, models

_select_plans: dict[tuple[str, str], tuple[str, list[tuple[Any, list[Callable]]]]] = {}


@dataclass(frozen=True)
class InsertGuard:
    """A condition the INSERT checks itself: the row is written only if the subquery finds one.

    ``build_sql(quote_name)`` returns a ``SELECT 1 FROM ... WHERE ...`` with ``%s`` for each
    of ``params``; ``key`` names it, so its SQL is built once per database.
    """

    key: str
    build_sql: Callable[[Callable[[str], str]], str]
    params: Sequence[Any]


class GuardFailed(Exception):
    """The guard of an INSERT found nothing, so the row was not written."""


def select_one_joined(
    *,
    key: str,
    build_sql: Callable[[Callable[[str], str]], tuple[str, Sequence[models.Field]]],
    params: Sequence[Any],
    using: str = "default",
) -> list[Any] | None:
    """Run a one-row SELECT whose SQL ``build_sql(quote_name)`` makes once per database.

    ``build_sql`` returns the statement and the model field behind each selected column, in
    order; the row comes back with every value converted as the ORM would convert it.
    """
    connection = connections[using]
    plan = _select_plans.get((connection.vendor, key))
    if plan is None:
        sql, fields = build_sql(connection.ops.quote_name)
        columns = []
        for field in fields:
            column = field.get_col(field.model._meta.db_table)
            converters = connection.ops.get_db_converters(column) + field.get_db_converters(
                connection
            )
            columns.append((column, converters))
        plan = (sql, columns)
        _select_plans[(connection.vendor, key)] = plan
    sql, columns = plan
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = []
    for value, (column, converters) in zip(row, columns, strict=True):
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    return values
