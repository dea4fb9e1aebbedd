"""Feature specs for a CSV model: read from a schema file (YAML or JSON) or inferred from the data.

A schema file gives any of the keys in FILE_KEYS for any feature::

    features:
      rain_mm: {unit: mm, kind: number, scope: moment, hard_minimum: 0, typical_maximum: 400}
      month: {kind: cyclic, period: 12, hard_minimum: 1, hard_maximum: 12}
      soil_type: {kind: category, categories: {1: clay, 2: sand}, scope: place}

What the file leaves out is inferred from the data, and the inference only claims what it can
defend: a typical range inside what the data showed, hard limits only from the file or a
curated spec, a category never (a column of codes looks like any integer column), a cyclic
feature only for an integer column named like a month whose values keep to 1-12.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlcore.engine.errors import DataError, SchemaError
from mlcore.engine.schema import FEATURE_KINDS, FEATURE_SCOPES, FeatureSpec

FILE_KEYS = (
    "unit",
    "description",
    "kind",
    "scope",
    "hard_minimum",
    "hard_maximum",
    "typical_minimum",
    "typical_maximum",
    "default",
    "group",
    "period",
    "categories",
)
_TEXT_KEYS = ("unit", "description", "group")
_NUMBER_KEYS = (
    "hard_minimum",
    "hard_maximum",
    "typical_minimum",
    "typical_maximum",
    "default",
    "period",
)
MAX_SCHEMA_BYTES = 1_000_000
_MONTH_NAME = re.compile(r"^(month|mon|month_of_year)$|_month$", re.IGNORECASE)

FeatureSchema = dict[str, dict[str, Any]]


def read_schema_file(path: str | os.PathLike[str]) -> FeatureSchema:
    """The file's entries by feature name, each checked; DataError names the feature and key.

    ``.json`` files are read as JSON, anything else as YAML (safe loading only).
    """
    location = os.fspath(path)
    label = os.path.basename(location)
    try:
        if os.path.getsize(location) > MAX_SCHEMA_BYTES:
            raise DataError(
                f"schema file {label!r} is over {MAX_SCHEMA_BYTES:,} bytes",
                fields={"schema": "too large"},
            )
        with open(location, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read schema file {label!r}: {exc}", fields={"schema": "unreadable"}
        ) from exc
    try:
        reader = json.loads if location.lower().endswith(".json") else yaml.safe_load
        content = reader(text)
    except json.JSONDecodeError as exc:
        raise _file_error(label, f"is not valid JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise _file_error(label, f"is not valid YAML: {exc}".replace("\n", " ")) from exc
    return parse_schema(content, label=label)


def parse_schema(content: object, *, label: str = "schema") -> FeatureSchema:
    """Check a decoded schema document (``{"features": {name: {key: value}}}``)."""
    if not isinstance(content, Mapping) or set(content) != {"features"}:
        raise _file_error(label, "must be a mapping with one key, 'features'")
    features = content["features"]
    if not isinstance(features, Mapping) or not features:
        raise _file_error(label, "'features' must map each feature name to its metadata")
    schema: FeatureSchema = {}
    for name, entry in features.items():
        name = str(name).strip()
        if not isinstance(entry, Mapping):
            raise _entry_error(label, name, None, "must be a mapping of keys to values")
        schema[name] = _parse_entry(label, name, entry)
    return schema


def _parse_entry(label: str, name: str, entry: Mapping[Any, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, value in entry.items():
        key = str(key)
        if key not in FILE_KEYS:
            raise _entry_error(label, name, key, f"unknown key; known keys: {', '.join(FILE_KEYS)}")
        if key in _TEXT_KEYS:
            if not isinstance(value, str):
                raise _entry_error(label, name, key, "must be text")
            parsed[key] = value.strip()
        elif key in _NUMBER_KEYS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _entry_error(label, name, key, f"must be a number, not {value!r}")
            if not math.isfinite(value):
                raise _entry_error(label, name, key, "must be a finite number")
            parsed[key] = float(value)
        elif key == "kind":
            if value not in FEATURE_KINDS:
                choices = ", ".join(FEATURE_KINDS)
                raise _entry_error(label, name, key, f"{value!r} is not one of {choices}")
            parsed[key] = value
        elif key == "scope":
            if value not in FEATURE_SCOPES:
                choices = ", ".join(FEATURE_SCOPES)
                raise _entry_error(label, name, key, f"{value!r} is not one of {choices}")
            parsed[key] = value
        else:
            parsed[key] = _parse_categories(label, name, value)
    for low, high in (("hard_minimum", "hard_maximum"), ("typical_minimum", "typical_maximum")):
        if low in parsed and high in parsed and parsed[low] > parsed[high]:
            raise _entry_error(
                label, name, low, f"{parsed[low]:g} is above {high} {parsed[high]:g}"
            )
    if "period" in parsed and parsed["period"] <= 0:
        raise _entry_error(label, name, "period", "must be above 0")
    kind = parsed.get("kind")
    if "categories" in parsed and kind != "category":
        raise _entry_error(label, name, "categories", "only a feature of kind category has them")
    if kind == "category" and "categories" not in parsed:
        raise _entry_error(label, name, "categories", "a category needs its codes and labels")
    if "period" in parsed and kind != "cyclic":
        raise _entry_error(label, name, "period", "only a feature of kind cyclic has one")
    return parsed


def _parse_categories(label: str, name: str, value: object) -> tuple[tuple[int, str], ...]:
    if not isinstance(value, Mapping) or not value:
        raise _entry_error(label, name, "categories", "must map each code to its label")
    pairs = []
    for code, text in value.items():
        # JSON keys are always text: "1" is the code 1.
        if isinstance(code, str) and re.fullmatch(r"\s*-?\d+\s*", code):
            code = int(code)
        if isinstance(code, bool) or not isinstance(code, int):
            raise _entry_error(label, name, "categories", f"code {code!r} is not a whole number")
        if not isinstance(text, (str, int, float)) or not str(text).strip():
            raise _entry_error(label, name, "categories", f"code {code} has no label")
        pairs.append((code, str(text).strip()))
    return tuple(sorted(pairs))


def _file_error(label: str, problem: str) -> DataError:
    return DataError(f"schema file {label!r} {problem}", fields={"schema": problem})


def _entry_error(label: str, name: str, key: str | None, problem: str) -> DataError:
    where = f"feature {name!r}" + (f", key {key!r}" if key else "")
    field = f"{name}.{key}" if key else name
    return DataError(f"schema file {label!r}, {where}: {problem}", fields={field: problem})


def features_from_frame(
    frame: pd.DataFrame,
    features: Sequence[str],
    *,
    known: Sequence[FeatureSpec] = (),
    schema: FeatureSchema | None = None,
    columns: Sequence[str] | None = None,
    report: list[str] | None = None,
    warnings: list[str] | None = None,
) -> list[FeatureSpec]:
    """Feature specs for a trained-on table: the schema file's entry, else a curated spec whose
    name matches, else what the data shows.

    The typical range inferred from data is its 0.1-99.9 percentiles: values past them are
    flagged as out of range, and it never reaches past what the data holds.

    Hard limits (what is physically possible) come only from the schema file or a curated spec
    (and then only when the column's values keep to them): a CSV says nothing about what is
    possible, so a column without one gets no hard limits (nothing refused, only flagged)
    rather than limits guessed from the data. The one exception is a month, 1 to 12 by
    definition. Each column without hard limits is named in ``report``. ``columns`` (every
    column of the file) lets a schema entry for a column that is not a feature be told apart
    from one for a column the file does not have, which is refused; the first is ignored with
    a warning, added to ``warnings``.
    """
    schema = schema or {}
    _check_schema_names(schema, features, columns, warnings)
    catalogue = {spec.name: spec for spec in known}
    specs = []
    unlimited = []
    for name in features:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise DataError(f"column {name!r} has no numeric values", fields={name: "blank"})
        note = name
        if name in catalogue:
            spec = catalogue[name]
            if spec.outside_hard_limits(float(values.min())) or spec.outside_hard_limits(
                float(values.max())
            ):
                # The column is not what the curated name describes (another unit, perhaps).
                note = f"{name} (its values are not {spec.hard_limit_text()})"
                spec = replace(spec, hard_minimum=None, hard_maximum=None)
        else:
            spec = _inferred(name, values)
        if name in schema:
            spec = _with_entry(spec, schema[name], values)
        if not spec.has_hard_limits and spec.kind != "category":
            unlimited.append(note)
        specs.append(spec)
    if report is not None:
        if schema:
            given = [name for name in features if name in schema]
            report.append(f"feature metadata from the schema file for {', '.join(given)}")
        cyclic = [spec.name for spec in specs if spec.kind == "cyclic" and spec.name not in schema]
        if cyclic:
            report.append(f"read {', '.join(cyclic)} as a month: cyclic, 1 to 12")
        if unlimited:
            report.append(
                f"no hard limits for {', '.join(unlimited)}: nothing says which values are "
                "possible, so none are refused; values outside the typical range are flagged"
            )
    return specs


def _check_schema_names(
    schema: FeatureSchema,
    features: Sequence[str],
    columns: Sequence[str] | None,
    warnings: list[str] | None,
) -> None:
    available = list(columns) if columns is not None else list(features)
    missing = [name for name in schema if name not in available]
    if missing:
        raise DataError(
            f"the schema file names column(s) the data does not have: {', '.join(missing)}; "
            f"available columns: {', '.join(available)}",
            fields={name: "not in the data" for name in missing},
        )
    unused = [name for name in schema if name not in features]
    if unused and warnings is not None:
        warnings.append(
            f"the schema file describes {', '.join(unused)}, which the model does not use as "
            "features; those entries are ignored"
        )


def _inferred(name: str, values: np.ndarray) -> FeatureSpec:
    integral = bool(np.all(values == np.round(values)))
    low, high = (float(bound) for bound in np.quantile(values, [0.001, 0.999]))
    median = float(np.median(values))
    if integral:
        # Whole numbers round outwards, which stays within the data's whole-number extremes.
        low, high, median = math.floor(low), math.ceil(high), round(median)
    if integral and _MONTH_NAME.search(name) and values.min() >= 1 and values.max() <= 12:
        return FeatureSpec(
            name=name,
            dtype="int",
            unit="",
            minimum=low,
            maximum=high,
            description=f"Column {name!r} of the training data, read as the month (1 to 12).",
            default=median,
            group="Data",
            hard_minimum=1.0,
            hard_maximum=12.0,
            kind="cyclic",
            period=12.0,
            scope="moment",
        )
    return FeatureSpec(
        name=name,
        dtype="int" if integral else "float",
        unit="",
        minimum=low,
        maximum=high,
        description=f"Column {name!r} of the training data.",
        default=median,
        group="Data",
    )


def _with_entry(spec: FeatureSpec, entry: Mapping[str, Any], values: np.ndarray) -> FeatureSpec:
    """``spec`` with the schema entry's keys applied; refuses data the entry rules out."""
    name = spec.name
    kind = entry.get("kind", spec.kind)
    integral = bool(np.all(values == np.round(values)))
    if kind in ("integer", "category") and not integral:
        raise DataError(
            f"the schema file says {name!r} is of kind {kind}, but the column holds fractions",
            fields={f"{name}.kind": "the column holds fractions"},
        )
    dtype = "float" if kind == "number" else "int" if integral else "float"
    hard_minimum = entry.get("hard_minimum", spec.hard_minimum)
    hard_maximum = entry.get("hard_maximum", spec.hard_maximum)
    categories = entry.get("categories", spec.categories if kind == "category" else ())
    period = entry.get("period", spec.period if kind == "cyclic" else None)
    refused = _refused_values(name, values, hard_minimum, hard_maximum, categories)
    if refused:
        raise DataError(refused, fields={name: "values the schema file rules out"})
    codes = np.asarray([code for code, _ in categories], dtype=np.float64)
    if kind == "category":
        low, high = float(codes.min()), float(codes.max())
        present = values[np.isin(values, codes)]
        common = float(pd.Series(present).mode().iloc[0]) if present.size else float(codes[0])
        default = entry.get("default", common)
    else:
        low = _clip(spec.minimum, hard_minimum, hard_maximum)
        high = _clip(spec.maximum, hard_minimum, hard_maximum)
        default = entry.get("default", _clip(spec.default, hard_minimum, hard_maximum))
    low = entry.get("typical_minimum", low)
    high = entry.get("typical_maximum", high)
    if low > high:
        # One end given in the file and the other inferred past it: the file's end wins.
        low, high = (low, low) if "typical_minimum" in entry else (high, high)
    try:
        return FeatureSpec(
            name=name,
            dtype=dtype,
            unit=entry.get("unit", spec.unit),
            minimum=low,
            maximum=high,
            description=entry.get("description", spec.description),
            default=default,
            group=entry.get("group", spec.group),
            hard_minimum=hard_minimum,
            hard_maximum=hard_maximum,
            kind=kind,
            scope=entry.get("scope", spec.scope),
            categories=categories,
            period=period,
        )
    except SchemaError as exc:
        raise DataError(f"the schema file's entry for {exc.message}", fields=exc.fields) from exc


def _refused_values(
    name: str,
    values: np.ndarray,
    low: float | None,
    high: float | None,
    categories: Sequence[tuple[int, str]],
) -> str:
    """Why the column contradicts the schema file's limits or codes, or ''."""
    outside = np.zeros(values.shape, dtype=bool)
    if low is not None:
        outside |= values < low
    if high is not None:
        outside |= values > high
    if categories:
        outside |= ~np.isin(values, [code for code, _ in categories])
    if not outside.any():
        return ""
    examples = ", ".join(f"{value:g}" for value in np.unique(values[outside])[:3])
    rule = "codes" if categories else "hard limits"
    return (
        f"column {name!r} has {int(outside.sum())} value(s) outside the {rule} the schema "
        f"file gives it, e.g. {examples}; fix the data or the file"
    )


def _clip(value: float, low: float | None, high: float | None) -> float:
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value
