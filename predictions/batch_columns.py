"""A batch file's columns beyond the model's inputs: the site column and the pass-through ones.

A file may name each row's site (a ``site`` or ``site_code`` column): the site's place values
fill the place features the file leaves out or blank, and the audit row references the site.
With a ``site_name`` column too, a code not yet registered is registered on the fly (when the
job's owner may register sites); without one it is a row error naming the code. Every other
column passes through: kept on the audit row as its context and written back beside the
answer in results.csv and errors.csv, in the file's order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from django.conf import settings

from floodsite.exceptions import ApplicationError
from mlcore.engine.schema import FeatureSpec
from predictions.context import context_size
from predictions.models import SITE_CODE_PATTERN, SITE_CODE_RULE, Site

SITE_COLUMNS = ("site", "site_code")
SITE_NAME_COLUMN = "site_name"
# Names results.csv and errors.csv use for their own columns.
RESERVED = ("row", "probability", "label", "risk_band", "column", "reason")
_CODE = re.compile(SITE_CODE_PATTERN)
_NAME_MAX = 200


def header_plan(header: list[str], features: list[str], place: Sequence[str]) -> list[str]:
    """Check the header; return its pass-through columns (every one that is not an input).

    Refused, naming each problem: duplicate or blank names, both ``site`` and ``site_code``, a
    ``site_name`` without a site column, a missing input (a place feature may be missing when
    a site column names the site), a column named like one of the answer's, and more extra
    columns than CONTEXT_MAX_KEYS.
    """
    problems: dict[str, str] = {}
    seen: set[str] = set()
    duplicates = sorted({n for n in header if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if duplicates:
        problems["header"] = "duplicate columns: " + ", ".join(duplicates[:20])
    if "" in seen:
        problems["header"] = "a column has no name"
    site_columns = [name for name in SITE_COLUMNS if name in seen]
    if len(site_columns) > 1:
        problems["site"] = "use one of the columns site or site_code, not both"
    if SITE_NAME_COLUMN in seen and not site_columns:
        problems["site_name"] = "a site_name column needs a site (or site_code) column"
    optional = set(place) if site_columns else set()
    missing = [name for name in features if name not in seen and name not in optional]
    if missing:
        problems["missing_columns"] = ", ".join(missing)
    passthrough = [name for name in header if name not in features]
    clashing = [name for name in passthrough if name in RESERVED]
    if clashing:
        problems["reserved_columns"] = (
            ", ".join(clashing) + " name columns of the results; rename them in the file"
        )
    extra = [name for name in passthrough if name not in SITE_COLUMNS and name != SITE_NAME_COLUMN]
    if len(extra) > settings.CONTEXT_MAX_KEYS:
        shown = ", ".join(repr(name) for name in extra[:20])
        problems["extra_columns"] = (
            f"{len(extra)} columns that are not model inputs ({shown}"
            f"{' and more' if len(extra) > 20 else ''}); at most {settings.CONTEXT_MAX_KEYS} "
            "pass through (CONTEXT_MAX_KEYS)"
        )
    if problems:
        raise ApplicationError(
            "The header does not match the model's inputs: "
            + "; ".join(f"{key.replace('_', ' ')}: {value}" for key, value in problems.items())
            + ".",
            fields=problems,
            code="invalid_header",
        )
    return passthrough


@dataclass
class SiteLookup:
    """The sites a chunk's rows name, read once per chunk; codes to register on the fly."""

    may_register: bool
    known: dict[str, tuple[int, dict]] = field(default_factory=dict)
    planned: dict[str, str] = field(default_factory=dict)

    def load(self, codes: set[str]) -> None:
        wanted = [code for code in codes if code not in self.known]
        for pk, code, features in Site.objects.filter(code__in=wanted).values_list(
            "pk", "code", "features"
        ):
            self.known[code] = (pk, features or {})


@dataclass
class BlockColumns:
    """What the extra columns of one block say, row by row (positions within the block)."""

    refused: dict[int, tuple[str, str]]
    codes: list[str | None]
    cells: list[list[str]]
    contexts: list[dict[str, str] | None]


def _text(frame: pd.DataFrame, name: str) -> list[str]:
    return frame[name].astype("string").fillna("").str.strip().tolist()


def block_columns(
    frame: pd.DataFrame,
    *,
    passthrough: list[str],
    place: Sequence[FeatureSpec],
    sites: SiteLookup,
) -> BlockColumns:
    """Read the block's site and pass-through columns; fill place values from the sites.

    ``frame`` is changed in place: a place feature the file leaves out (or blank on a row) takes
    the row's site's value, so the model's validation then sees a complete row.
    """
    size = len(frame)
    refused: dict[int, tuple[str, str]] = {}
    cells = (
        [list(row) for row in zip(*(_text(frame, name) for name in passthrough), strict=True)]
        if passthrough
        else [[] for _ in range(size)]
    )
    site_column = next((name for name in SITE_COLUMNS if name in passthrough), None)
    codes: list[str | None] = [None] * size
    if site_column is not None:
        typed = _text(frame, site_column)
        codes = list(typed)
        names = _text(frame, SITE_NAME_COLUMN) if SITE_NAME_COLUMN in passthrough else None
        sites.load({code for code in typed if code})
        for position, code in enumerate(typed):
            reason = _site_problem(code, position, names, sites, column=site_column)
            if reason:
                refused[position] = reason
                codes[position] = None
        _fill_place_values(frame, codes, place, sites)
    extra = [
        (index, name)
        for index, name in enumerate(passthrough)
        if name not in SITE_COLUMNS and name != SITE_NAME_COLUMN
    ]
    contexts: list[dict[str, str] | None] = [None] * size
    if extra:
        limit = settings.CONTEXT_MAX_BYTES
        for position, row in enumerate(cells):
            context = {name: row[index] for index, name in extra}
            length = context_size(context)
            if length > limit:
                refused.setdefault(
                    position,
                    ("", f"extra columns hold {length:,} bytes as JSON; at most {limit:,} "
                     "(CONTEXT_MAX_BYTES)"),
                )  # fmt: skip
            contexts[position] = context
    return BlockColumns(refused=refused, codes=codes, cells=cells, contexts=contexts)


def _site_problem(
    code: str, position: int, names: list[str] | None, sites: SiteLookup, *, column: str
) -> tuple[str, str] | None:
    if not code:
        return column, "blank: a file with a site column needs a site code on every row"
    if code in sites.known or code in sites.planned:
        return None
    if names is None:
        return column, f"unknown site code {code[:64]!r}"
    if not sites.may_register:
        return column, f"unknown site code {code[:64]!r} (you may not register sites)"
    if not _CODE.fullmatch(code):
        return (
            column,
            f"unknown site code {code[:64]!r}, and not one to register: use {SITE_CODE_RULE}",
        )
    name = names[position]
    if not name or len(name) > _NAME_MAX:
        return SITE_NAME_COLUMN, (
            f"1 to {_NAME_MAX} characters needed to register the new site {code!r}"
        )
    sites.planned[code] = name
    return None


def _fill_place_values(
    frame: pd.DataFrame, codes: list[str | None], place: Sequence[FeatureSpec], sites: SiteLookup
) -> None:
    for spec in place:
        values = np.array(
            [
                (sites.known[code][1].get(spec.name) if code in sites.known else None)
                for code in codes
            ],
            dtype=object,
        )
        from_site = np.array([value is not None for value in values])
        if not from_site.any():
            if spec.name not in frame.columns:
                frame[spec.name] = np.nan
            continue
        if spec.name not in frame.columns:
            column = pd.Series(np.nan, index=frame.index, dtype=object)
            blank = np.ones(len(frame), dtype=bool)
        else:
            column = frame[spec.name].astype(object)
            blank = column.isna().to_numpy() | (
                column.astype("string").fillna("").str.strip() == ""
            ).to_numpy(dtype=bool)
        fill = blank & from_site
        column = column.copy()
        column[fill] = values[fill]
        frame[spec.name] = column
