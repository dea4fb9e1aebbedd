"""Column roles: what each column of a training table is (feature, id, time, ...) and why.

A CSV says nothing about which columns measure something and which only name a row, a place
or a moment. A model handed an identifier learns which rows are which rather than what
floods: a serial number, a station code or the station's coordinates repeat the station, a
year lets a model memorise the wet years it saw. So every column gets a role and a reason,
shown before training and kept in the manifest; nothing but a ``feature`` is fitted on.

Roles: ``feature``; ``id`` (names a row or a place); ``time`` (a calendar position; usable for
``--split time:COLUMN``); ``group`` (a code repeated on every row of a station or site; usable
for ``--split group:COLUMN``); ``label``; ``text`` (words the model cannot use); ``ignored``
(excluded by the user, left out of ``--features`` or blank).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ROLES = ("feature", "id", "time", "group", "label", "text", "ignored")

# Spreadsheet exports spell "no value" in many ways; all of them mean a blank cell.
NA_TOKENS = {"", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a"}

_ID_NAME = re.compile(
    r"^(id|uuid|guid|index|row|row_?(id|num|number)|serial|serial_?(no|num|number)|record_?(id|no|num|number)|obs_?(id|no))$|(_id|_uuid)$",
    re.I,
)
_TIME_NAME = re.compile(
    r"^(year|yr|date|datetime|timestamp|time|period|yyyymm|hydrological_year|water_year)$"
    r"|(_date|_time|_year|_period|_timestamp)$",
    re.I,
)
# The position in the year is a driver of floods (the season), not a calendar label.
_SEASON_NAME = re.compile(r"^(month|mon|day_of_year|doy|week_of_year|season)$", re.I)
_GROUP_NAME = re.compile(
    r"^(station|site|gauge|basin|catchment|location|sensor)(_?(id|code|no|num|number|nr|name|ref))?$",
    re.I,
)
_CODE_NAME = re.compile(r"(code|_no|_num|number|_nr|_ref|^no)$", re.I)
_COORD_NAME = re.compile(
    r"^(x|y|easting|northing|east|north|lat|latitude|lon|lng|longitude|grid_?(x|y|ref))$"
    r"|(_x|_y|_easting|_northing|_lat|_lon)$",
    re.I,
)
# Below this many values a distinct value per row proves nothing: measurements can be distinct.
MIN_ROWS_FOR_UNIQUE_ID = 20
_MIN_ROWS_FOR_UNIQUE_INTEGER = 100


@dataclass
class Column:
    """One CSV column seen both as numbers and as the cells that are not numbers."""

    numbers: pd.Series
    blank: pd.Series
    bad: pd.Series
    text: pd.Series | None

    @property
    def is_text(self) -> bool:
        return len(self.bad) > 0 and len(self.bad) == int((~self.blank).sum())

    def values(self) -> pd.Series:
        """The column as numbers, or as stripped text when it is a text column."""
        if self.is_text and self.text is not None:
            return self.text.where(~self.blank)
        return self.numbers


def read_column(series: pd.Series) -> Column:
    """Parse one raw column: numbers where they are numbers, blanks, and the rest as text."""
    if series.dtype.kind in "fiub":
        # The C parser already produced numbers (the fast path for clean exports).
        numbers = series.astype(np.float64)
        numbers = numbers.where(np.isfinite(numbers))
        blank = numbers.isna()
        return Column(numbers, blank, numbers.iloc[0:0], None)
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    blank = text.str.lower().isin(NA_TOKENS)
    numbers = pd.to_numeric(text.where(~blank), errors="coerce").astype(np.float64)
    numbers = numbers.where(np.isfinite(numbers))
    return Column(numbers, blank, text[~blank & numbers.isna()], text)


@dataclass
class ColumnRole:
    """One column's role in training and the reason a reader can check."""

    name: str
    role: str
    why: str
    detected: str = ""  # the role found in the data when the user overrode it

    def to_dict(self) -> dict[str, Any]:
        item = {"name": self.name, "role": self.role, "why": self.why}
        if self.detected:
            item["detected"] = self.detected
        return item


def _unique_row_id(name: str, column: Column) -> str | None:
    """Why a column names each row (a distinct value per row), or None."""
    if _ID_NAME.search(name):
        return "its name marks it as an identifier"
    present = int((~column.blank).sum())
    if present < MIN_ROWS_FOR_UNIQUE_ID:
        return None
    if column.is_text:
        return "every value is a distinct label" if column.bad.is_unique else None
    numbers = column.numbers.dropna()
    if len(numbers) != present or not bool((numbers % 1 == 0).all()):
        return None
    distinct = numbers.nunique()
    if distinct == len(numbers) and numbers.max() - numbers.min() + 1 == len(numbers):
        return "it is a running count with a distinct value per row"
    monotone = numbers.is_monotonic_increasing or numbers.is_monotonic_decreasing
    if distinct >= 0.98 * len(numbers) and monotone:
        return "a counter: whole numbers rising row by row (with gaps), nearly one per row"
    if distinct == len(numbers) and len(numbers) >= _MIN_ROWS_FOR_UNIQUE_INTEGER:
        return "a distinct whole number on every row"
    return None


def _one_per_group(column: Column, groups: pd.Series) -> bool:
    """Whether the column holds one value per group and a different value for each group."""
    values = column.values()
    present = values.notna() & groups.notna()
    if present.sum() < MIN_ROWS_FOR_UNIQUE_ID:
        return False
    pairs = pd.DataFrame({"g": groups[present], "v": values[present]})
    per_group = pairs.groupby("g")["v"].nunique()
    return bool((per_group == 1).all()) and pairs["v"].nunique() == len(per_group) > 1


def _repeated_code(column: Column) -> bool:
    values = column.values().dropna()
    distinct = values.nunique()
    return len(values) >= MIN_ROWS_FOR_UNIQUE_ID and 1 < distinct <= len(values) / 2


def assign_roles(
    columns: dict[str, Column],
    *,
    target: str,
    requested: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> tuple[list[ColumnRole], list[str]]:
    """A role for every column in file order, and a warning for each risky user choice.

    ``requested`` (``--features``) wins over detection but each id-, time- or group-like
    choice is warned about; ``exclude`` (``--exclude``) drops columns whatever they are.
    """
    roles: dict[str, ColumnRole] = {}
    names = list(columns)
    excluded = set(exclude)
    for name in names:
        if name == target:
            roles[name] = ColumnRole(name, "label", "the column to predict (--target)")
        elif name in excluded:
            roles[name] = ColumnRole(name, "ignored", "excluded with --exclude")

    def open_names() -> list[str]:
        return [name for name in names if name not in roles]

    # Pass 1: what the name or the whole column says on its own.
    for name in open_names():
        column = columns[name]
        why = _unique_row_id(name, column)
        if why:
            roles[name] = ColumnRole(name, "id", why)
        elif _TIME_NAME.search(name):
            roles[name] = ColumnRole(
                name,
                "time",
                "a calendar position: a model fitted on it learns the years it saw, "
                "which say nothing about the next one",
            )
        elif column.is_text and _GROUP_NAME.search(name) and _repeated_code(column):
            roles[name] = ColumnRole(
                name, "group", "a code repeated on every row of one station or site"
            )
        elif column.is_text:
            roles[name] = ColumnRole(name, "text", "text, not numbers: the model cannot use it")

    group = next((name for name in names if roles.get(name, _NONE).role == "group"), None)
    if group is None:
        # Without a text code, a station *number* repeated on its rows is the group.
        group = next(
            (
                name
                for name in open_names()
                if _GROUP_NAME.search(name)
                and _repeated_code(columns[name])
                and bool((columns[name].numbers.dropna() % 1 == 0).all())
            ),
            None,
        )
        if group is not None:
            roles[group] = ColumnRole(
                group, "group", "a station number repeated on every row of the station"
            )

    # Pass 2: columns that only restate which group a row belongs to.
    if group is not None:
        groups = columns[group].values()
        for position, name in enumerate(names):
            if name in roles or not _one_per_group(columns[name], groups):
                continue
            before = names[position - 1] if position else ""
            next_to_id = roles.get(before, _NONE).role in ("id", "group")
            if _CODE_NAME.search(name) or _GROUP_NAME.search(name):
                roles[name] = ColumnRole(
                    name, "id", f"one value per {group!r} and a different one for each: a code"
                )
            elif _COORD_NAME.search(name) or next_to_id:
                roles[name] = ColumnRole(
                    name,
                    "id",
                    f"coordinates of each {group!r}, next to its id: they say which place, "
                    "not what it is like",
                )

    for name in open_names():
        column = columns[name]
        if column.numbers.isna().all() and requested is None:
            # Left for the loader, which names an all-blank column as an error.
            roles[name] = ColumnRole(name, "feature", "every value is blank")
        elif _SEASON_NAME.search(name):
            roles[name] = ColumnRole(name, "feature", "the season: a driver of floods")
        else:
            roles[name] = ColumnRole(name, "feature", "a measurement")

    warnings: list[str] = []
    if requested is not None:
        chosen = set(requested)
        for name in names:
            role = roles[name]
            if name in chosen:
                if role.role in ("id", "time", "group"):
                    warnings.append(
                        f"--features includes {name!r}, which looks like "
                        f"{_ARTICLE[role.role]} column "
                        f"({role.why}); it is used because you asked for it"
                    )
                if role.role != "feature":
                    roles[name] = ColumnRole(name, "feature", "chosen with --features", role.role)
                else:
                    roles[name] = ColumnRole(name, "feature", f"{role.why}; chosen with --features")
            elif role.role == "feature":
                roles[name] = ColumnRole(name, "ignored", "not in --features")
    return [roles[name] for name in names], warnings


_NONE = ColumnRole("", "", "")
_ARTICLE = {"id": "an id", "time": "a time", "group": "a group"}


def format_roles(roles: Sequence[ColumnRole]) -> list[str]:
    """The role table as aligned text lines, one per column, for the CLI."""
    width = max([len(role.name) for role in roles] + [6])
    lines = [f"{'column':<{width}}  {'role':<8} why"]
    for role in roles:
        why = role.why + (f" (looks like: {role.detected})" if role.detected else "")
        lines.append(f"{role.name:<{width}}  {role.role:<8} {why}")
    return lines
