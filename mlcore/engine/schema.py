"""Model schema: feature specs, risk bands, the manifest, and validation of prediction inputs."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from mlcore.engine.calibration import Calibration
from mlcore.engine.errors import SchemaError

FEATURE_DTYPES = ("float", "int")
# What a feature's numbers mean: a quantity, a count, a code from a list (soil type), or a
# position in a cycle (a month: December is next to January).
FEATURE_KINDS = ("number", "integer", "category", "cyclic")
# Whether a feature describes the place (elevation) or the moment (rainfall); None: not said.
FEATURE_SCOPES = ("place", "moment")

REQUIRED = "required"
UNKNOWN = "unknown feature"
NOT_A_NUMBER = "must be a finite number"
NOT_WHOLE = "must be a whole number"

# Blank form fields and blank CSV cells mean "not given", not zero; an empty reason string
# stands for that outcome so it cannot be confused with a number or a real reason.
_BLANK = ""


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: how to validate it and how to present it to an analyst.

    ``minimum``/``maximum`` are the typical range: values outside it are scored and flagged.
    ``hard_minimum``/``hard_maximum`` are what is physically possible (rain is never negative,
    a percentage never above 100): values outside them are refused. None means no limit on
    that side; manifests written before hard limits existed have none, so they refuse nothing.

    ``kind`` is one of FEATURE_KINDS (manifests written before kinds existed get "integer" or
    "number" from ``dtype``). A category lists its ``categories`` as (code, label) pairs and
    refuses any other code; a cyclic feature has a ``period`` (12 for a month), and the model
    sees it as a position on a circle starting at its hard minimum (see engine.encoding).
    """

    name: str
    dtype: str
    unit: str
    minimum: float
    maximum: float
    description: str
    default: float
    group: str
    hard_minimum: float | None = None
    hard_maximum: float | None = None
    kind: str = ""
    scope: str | None = None
    categories: tuple[tuple[int, str], ...] = ()
    period: float | None = None
    # The category codes as floats, for validation on the hot path; None for other kinds.
    _codes: frozenset[float] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dtype not in FEATURE_DTYPES:
            raise SchemaError(
                f"feature {self.name!r} has dtype {self.dtype!r}; expected one of "
                f"{', '.join(FEATURE_DTYPES)}",
                fields={self.name: "invalid dtype"},
            )
        if not self.kind:
            object.__setattr__(self, "kind", "integer" if self.dtype == "int" else "number")
        object.__setattr__(self, "categories", tuple(tuple(pair) for pair in self.categories))
        problem = _kind_problem(self)
        if problem:
            raise SchemaError(f"feature {self.name!r} {problem}", fields={self.name: problem})
        if self.kind == "category":
            codes = frozenset(float(code) for code, _ in self.categories)
            object.__setattr__(self, "_codes", codes)
        if not self.minimum <= self.maximum:
            raise SchemaError(
                f"feature {self.name!r} has minimum {self.minimum} above maximum {self.maximum}",
                fields={self.name: "minimum above maximum"},
            )
        # A typical range or default past what is possible would mean the limits are wrong.
        for label, value in (("minimum", self.minimum), ("maximum", self.maximum)):
            if self.outside_hard_limits(value):
                raise SchemaError(
                    f"feature {self.name!r} has its typical {label} {value} outside its hard "
                    f"limits ({self.hard_limit_text()})",
                    fields={self.name: "typical range outside the hard limits"},
                )

    @property
    def has_hard_limits(self) -> bool:
        return self.hard_minimum is not None or self.hard_maximum is not None

    def outside_hard_limits(self, value: float) -> bool:
        return (self.hard_minimum is not None and value < self.hard_minimum) or (
            self.hard_maximum is not None and value > self.hard_maximum
        )

    def hard_limit_text(self) -> str:
        """'between 0 and 100 %', 'at least 0 mm', or '' when the feature has no hard limit."""
        unit = f" {self.unit}" if self.unit else ""
        low, high = self.hard_minimum, self.hard_maximum
        if low is not None and high is not None:
            return f"between {_number_text(low)} and {_number_text(high)}{unit}"
        if low is not None:
            return f"at least {_number_text(low)}{unit}"
        if high is not None:
            return f"at most {_number_text(high)}{unit}"
        return ""

    def hard_limit_reason(self) -> str:
        """Why a value outside the hard limits is refused, naming the limit."""
        return f"must be {self.hard_limit_text()} (hard limit)"

    def category_reason(self) -> str:
        """Why a code outside a category's list is refused, listing the codes."""
        listed = ", ".join(f"{code} ({label})" for code, label in self.categories)
        return f"must be one of the codes {listed}"

    def kind_text(self) -> str:
        """'number', 'cyclic, period 12' or 'category: 1 clay, 2 sand', for the model page."""
        if self.kind == "cyclic" and self.period is not None:
            return f"cyclic, period {_number_text(self.period)}"
        if self.kind == "category":
            return "category: " + ", ".join(f"{code} {label}" for code, label in self.categories)
        return self.kind

    @property
    def category_labels(self) -> dict[int, str]:
        return dict(self.categories)

    def range_text(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"between {_number_text(self.minimum)} and {_number_text(self.maximum)}{unit}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "unit": self.unit,
            "minimum": float(self.minimum),
            "maximum": float(self.maximum),
            "hard_minimum": _optional_float(self.hard_minimum),
            "hard_maximum": _optional_float(self.hard_maximum),
            "description": self.description,
            "default": float(self.default),
            "group": self.group,
            "kind": self.kind,
            "scope": self.scope,
            "categories": [{"code": code, "label": label} for code, label in self.categories],
            "period": _optional_float(self.period),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        keys = ("name", "dtype", "unit", "minimum", "maximum", "description", "default", "group")
        missing = [key for key in keys if key not in data]
        if missing:
            label = data.get("name", "?")
            raise SchemaError(
                f"feature spec {label!r} is missing {', '.join(missing)}",
                fields={key: REQUIRED for key in missing},
            )
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            unit=str(data["unit"]),
            minimum=float(data["minimum"]),
            maximum=float(data["maximum"]),
            description=str(data["description"]),
            default=float(data["default"]),
            group=str(data["group"]),
            # Absent in manifests written before hard limits: no limit, nothing refused.
            hard_minimum=_optional_float(data.get("hard_minimum")),
            hard_maximum=_optional_float(data.get("hard_maximum")),
            # Absent in manifests written before kinds: the kind follows the dtype.
            kind=str(data.get("kind") or ""),
            scope=data.get("scope") or None,
            categories=tuple(
                (int(item["code"]), str(item["label"])) for item in data.get("categories") or ()
            ),
            period=_optional_float(data.get("period")),
        )


def _kind_problem(spec: FeatureSpec) -> str:
    """What is wrong with the spec's kind, scope, categories or period, or ''."""
    kind = spec.kind
    if kind not in FEATURE_KINDS:
        return f"has kind {kind!r}; expected one of {', '.join(FEATURE_KINDS)}"
    if spec.scope is not None and spec.scope not in FEATURE_SCOPES:
        return f"has scope {spec.scope!r}; expected one of {', '.join(FEATURE_SCOPES)}"
    if kind in ("integer", "category") and spec.dtype != "int":
        return f"has kind {kind} but its dtype is {spec.dtype!r}, not 'int'"
    if kind == "number" and spec.dtype != "float":
        return f"has kind number but its dtype is {spec.dtype!r}, not 'float'"
    if kind == "category":
        codes = [code for code, _ in spec.categories]
        if not codes:
            return "is a category with no categories"
        if any(type(code) is not int for code in codes) or len(set(codes)) != len(codes):
            return "has category codes that are not distinct whole numbers"
        if any(not isinstance(label, str) or not label.strip() for _, label in spec.categories):
            return "has a category without a label"
        if spec.default not in codes:
            return f"has default {_number_text(spec.default)}, which is not one of its codes"
    elif spec.categories:
        return f"has categories but its kind is {kind}, not category"
    if kind == "cyclic":
        if spec.period is None or not math.isfinite(spec.period) or spec.period <= 0:
            return "is cyclic without a positive period"
    elif spec.period is not None:
        return f"has a period but its kind is {kind}, not cyclic"
    return ""


@dataclass(frozen=True)
class RiskBand:
    """A named probability range; ``lower`` is inclusive and the band ends at the next one."""

    name: str
    lower: float
    meaning: str
    colour: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lower": float(self.lower),
            "meaning": self.meaning,
            "colour": self.colour,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskBand:
        missing = [key for key in ("name", "lower", "meaning", "colour") if key not in data]
        if missing:
            raise SchemaError(
                f"risk band {data.get('name', '?')!r} is missing {', '.join(missing)}",
                fields={key: REQUIRED for key in missing},
            )
        return cls(
            name=str(data["name"]),
            lower=float(data["lower"]),
            meaning=str(data["meaning"]),
            colour=str(data["colour"]),
        )


DEFAULT_RISK_BANDS: tuple[RiskBand, ...] = (
    RiskBand(
        "low",
        0.0,
        "Flooding is unlikely under these conditions; routine monitoring is enough.",
        "#2e7d32",
    ),
    RiskBand(
        "moderate",
        0.2,
        "Flooding is possible; check forecasts and prepare local response plans.",
        "#f9a825",
    ),
    RiskBand(
        "high",
        0.5,
        "Flooding is more likely than not; warn residents and stage equipment.",
        "#ef6c00",
    ),
    RiskBand(
        "severe",
        0.8,
        "Flooding is very likely; act now to protect people and property.",
        "#c62828",
    ),
)


def sorted_bands(bands: Iterable[RiskBand]) -> list[RiskBand]:
    """Bands ordered by lower bound, refusing a set that leaves probabilities uncovered."""
    ordered = sorted(bands, key=lambda band: band.lower)
    if not ordered:
        raise SchemaError("at least one risk band is needed", fields={"risk_bands": REQUIRED})
    if ordered[0].lower > 0.0:
        raise SchemaError(
            f"the lowest risk band starts at {ordered[0].lower}; it must start at 0",
            fields={"risk_bands": "must start at 0"},
        )
    lowers = [band.lower for band in ordered]
    if len(set(lowers)) != len(lowers) or lowers[-1] > 1.0:
        raise SchemaError(
            "risk band lower bounds must be distinct and within [0, 1]",
            fields={"risk_bands": "invalid bounds"},
        )
    return ordered


def parse_band_option(text: str, option: str = "bands") -> list[tuple[str, float]]:
    """``"moderate=0.2,high=0.5"`` as ``[("moderate", 0.2), ("high", 0.5)]``, checked.

    Names are the default bands' (``low`` is implied and always starts at 0); each value must
    be a number strictly between 0 and 1.
    """
    known = [band.name for band in DEFAULT_RISK_BANDS if band.lower > 0]
    pairs: list[tuple[str, float]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise SchemaError(
                f"--{option}: {item!r} is not NAME=NUMBER with NAME one of {', '.join(known)}",
                fields={option: f"bad item {item!r}"},
            )
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 < value < 1.0:
            raise SchemaError(
                f"--{option}: {name} must be a number between 0 and 1 (exclusive), not {raw!r}",
                fields={option: f"{name}: must be between 0 and 1"},
            )
        if name in dict(pairs):
            raise SchemaError(f"--{option}: {name} is given twice", fields={option: "repeated"})
        pairs.append((name, value))
    if not pairs:
        raise SchemaError(f"--{option} names no band", fields={option: "empty"})
    return pairs


def bands_with_lowers(lowers: Mapping[str, float]) -> list[RiskBand]:
    """The default bands named in ``lowers`` (plus ``low`` from 0), with those lower bounds.

    The bands must keep the default order (moderate below high below severe): a set that
    puts "high" under "moderate" is refused rather than reordered.
    """
    bands = [DEFAULT_RISK_BANDS[0]]
    for band in DEFAULT_RISK_BANDS[1:]:
        if band.name in lowers:
            bands.append(RiskBand(band.name, float(lowers[band.name]), band.meaning, band.colour))
    for below, above in pairwise(bands):
        if not below.lower < above.lower:
            raise SchemaError(
                f"risk band {above.name!r} starts at {above.lower:g}, not above "
                f"{below.name!r} at {below.lower:g}",
                fields={"bands": f"{above.name} not above {below.name}"},
            )
    return bands


_MANIFEST_REQUIRED = ("name", "features", "target", "class_labels", "risk_bands", "algorithm")


@dataclass
class Manifest:
    """Everything needed to validate, run, explain and audit one trained model version."""

    name: str
    features: list[FeatureSpec]
    target: str
    class_labels: list[str]
    risk_bands: list[RiskBand]
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    algorithm: str = ""
    trained_at: str = ""
    artifact_sha256: str = ""
    onnx: dict[str, Any] | None = None
    # How blank labels were read, each column's role, and how the metrics were measured.
    label_policy: dict[str, Any] = field(default_factory=dict)
    column_roles: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    # The map from the model's probability to the served one (calibration.Calibration), or
    # None for an uncalibrated model.
    calibration: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.risk_bands = sorted_bands(self.risk_bands)
        if len(self.class_labels) != 2:
            raise SchemaError(
                "a flood-risk model has exactly two class labels (negative, positive)",
                fields={"class_labels": "must have two labels"},
            )
        names = [spec.name for spec in self.features]
        if len(set(names)) != len(names):
            raise SchemaError("feature names must be unique", fields={"features": "duplicates"})
        if self.calibration is not None:
            # A malformed map is refused on load rather than on the first prediction.
            Calibration.from_dict(self.calibration)

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.features]

    @property
    def positive_label(self) -> str:
        return self.class_labels[1]

    def band_for(self, probability: float) -> RiskBand:
        chosen = self.risk_bands[0]
        for band in self.risk_bands:
            if probability >= band.lower:
                chosen = band
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": [spec.to_dict() for spec in self.features],
            "target": self.target,
            "class_labels": list(self.class_labels),
            "risk_bands": [band.to_dict() for band in self.risk_bands],
            "metrics": to_plain(self.metrics),
            "reference": to_plain(self.reference),
            "library_versions": to_plain(self.library_versions),
            "data_fingerprint": to_plain(self.data_fingerprint),
            "algorithm": self.algorithm,
            "trained_at": self.trained_at,
            "artifact_sha256": self.artifact_sha256,
            "onnx": to_plain(self.onnx),
            "label_policy": to_plain(self.label_policy),
            "column_roles": to_plain(self.column_roles),
            "evaluation": to_plain(self.evaluation),
            "calibration": to_plain(self.calibration),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        if not isinstance(data, Mapping):
            raise SchemaError("a manifest must be a JSON object", fields={"manifest": "invalid"})
        missing = [key for key in _MANIFEST_REQUIRED if key not in data]
        if missing:
            raise SchemaError(
                f"manifest is missing {', '.join(missing)}",
                fields={key: REQUIRED for key in missing},
            )
        try:
            features = [FeatureSpec.from_dict(item) for item in data["features"]]
            bands = [RiskBand.from_dict(item) for item in data["risk_bands"]]
        except (TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(
                f"manifest features or risk bands are malformed: {exc}",
                fields={"features": "malformed"},
            ) from exc
        return cls(
            name=str(data["name"]),
            features=features,
            target=str(data["target"]),
            class_labels=[str(label) for label in data["class_labels"]],
            risk_bands=bands,
            metrics=dict(data.get("metrics") or {}),
            reference=dict(data.get("reference") or {}),
            library_versions=dict(data.get("library_versions") or {}),
            data_fingerprint=dict(data.get("data_fingerprint") or {}),
            algorithm=str(data["algorithm"]),
            trained_at=str(data.get("trained_at") or ""),
            artifact_sha256=str(data.get("artifact_sha256") or ""),
            onnx=dict(data["onnx"]) if data.get("onnx") else None,
            label_policy=dict(data.get("label_policy") or {}),
            column_roles=list(data.get("column_roles") or []),
            evaluation=dict(data.get("evaluation") or {}),
            calibration=dict(data["calibration"]) if data.get("calibration") else None,
        )


def to_plain(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into JSON-native Python values, recursively."""
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [to_plain(item) for item in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        # JSON has no NaN/inf; None keeps the manifest loadable by strict parsers.
        return number if math.isfinite(number) else None
    return value


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _parse_value(raw: object, spec: FeatureSpec) -> float | str:
    """Return the value as a float, ``_BLANK`` when not given, or the reason it is invalid."""
    if type(raw) is float or type(raw) is int:
        # What JSON numbers decode to, checked without the ABCs below (bool is not int here).
        try:
            number = float(raw)
        except OverflowError:
            return NOT_A_NUMBER
    elif raw is None:
        return _BLANK
    elif isinstance(raw, (bool, np.bool_)):
        return NOT_A_NUMBER
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return _BLANK
        try:
            number = float(text)
        except ValueError:
            return NOT_A_NUMBER
    elif isinstance(raw, (numbers.Real, Decimal)):
        try:
            number = float(raw)
        except (OverflowError, ValueError):
            return NOT_A_NUMBER
    else:
        return NOT_A_NUMBER
    if not math.isfinite(number):
        return NOT_A_NUMBER
    if spec.dtype == "int" and not number.is_integer():
        return NOT_WHOLE
    # Inline rather than outside_hard_limits(): this runs per feature on the hot path.
    low, high = spec.hard_minimum, spec.hard_maximum
    if (low is not None and number < low) or (high is not None and number > high):
        return spec.hard_limit_reason()
    codes = spec._codes
    if codes is not None and number not in codes:
        return spec.category_reason()
    return number


def _check_one(
    specs: Sequence[FeatureSpec], inputs: Mapping[Any, object], fill_defaults: bool
) -> tuple[np.ndarray, dict[str, str]]:
    values = np.empty(len(specs), dtype=np.float64)
    problems: dict[str, str] = {}
    known = {spec.name for spec in specs}
    for key in inputs:
        if key not in known:
            problems[str(key)] = UNKNOWN
    for position, spec in enumerate(specs):
        parsed = _parse_value(inputs.get(spec.name), spec)
        if parsed == _BLANK:
            if fill_defaults:
                values[position] = spec.default
            else:
                problems[spec.name] = REQUIRED
        elif isinstance(parsed, str):
            problems[spec.name] = parsed
        else:
            values[position] = parsed
    return values, problems


def validate_inputs(
    manifest: Manifest, inputs: Mapping[str, object], *, fill_defaults: bool = False
) -> np.ndarray:
    """Validate one set of named inputs and return them as float64 values in schema order.

    Every problem is collected before raising so that a form can show them all at once.
    Values outside a feature's hard limits are refused, naming the limit; values only outside
    its typical [minimum, maximum] are accepted: the model still scores them and the
    prediction flags them as out of range.
    """
    if not isinstance(inputs, Mapping):
        raise SchemaError("inputs must be an object of feature values", fields={})
    values, problems = _check_one(manifest.features, inputs, fill_defaults)
    if problems:
        listed = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
        raise SchemaError(f"invalid inputs ({listed})", fields=problems)
    return values


def place_features(manifest: Manifest) -> list[FeatureSpec]:
    """The features that describe the place (scope "place"), in schema order."""
    return [spec for spec in manifest.features if spec.scope == "place"]


def validate_some(
    specs: Sequence[FeatureSpec], values: Mapping[str, object]
) -> tuple[dict[str, float], dict[str, str]]:
    """Check values given for some of ``specs`` (a site's place features): (clean, problems).

    A blank value (None or empty text) means "not given" and is left out; a name that is not
    one of ``specs`` is a problem, as is any value the full validation would refuse.
    """
    by_name = {spec.name: spec for spec in specs}
    clean: dict[str, float] = {}
    problems: dict[str, str] = {}
    for name, raw in values.items():
        spec = by_name.get(str(name))
        if spec is None:
            problems[str(name)] = UNKNOWN
            continue
        parsed = _parse_value(raw, spec)
        if parsed == _BLANK:
            continue
        if isinstance(parsed, str):
            problems[spec.name] = parsed
        else:
            clean[spec.name] = parsed
    return clean, problems


@dataclass
class RowValidation:
    """Outcome of validating many rows: the usable matrix and where each problem was."""

    matrix: np.ndarray
    valid_index: np.ndarray
    errors: list[tuple[int, str, str]]

    @property
    def n_invalid(self) -> int:
        return len({row for row, _, _ in self.errors})


_PLAIN_NUMBER_TYPES = (float, int, np.float64, np.float32, np.int64, np.int32)


def _plain_column(cells: list[object]) -> np.ndarray | None:
    if not all(type(cell) in _PLAIN_NUMBER_TYPES for cell in cells):
        return None
    try:
        return np.asarray(cells, dtype=np.float64)
    except OverflowError:
        # Python ints beyond float range; the cell-by-cell path reports them individually.
        return None


def validate_rows(
    manifest: Manifest, rows: Iterable[Mapping[str, object]], *, fill_defaults: bool = False
) -> RowValidation:
    """Validate a batch column by column; rows with any problem are left out of the matrix.

    Columns whose cells are all plain numbers (the common case for JSON and parsed CSV) are
    converted in one numpy call; only mixed columns fall back to checking cell by cell.
    """
    row_list = list(rows)
    specs = manifest.features
    n_rows = len(row_list)
    matrix = np.empty((n_rows, len(specs)), dtype=np.float64)
    bad = np.zeros(n_rows, dtype=bool)
    errors: list[tuple[int, str, str]] = []

    is_mapping = [isinstance(row, Mapping) for row in row_list]
    known = {spec.name for spec in specs}
    for index, row in enumerate(row_list):
        if not is_mapping[index]:
            errors.append((index, "", "row must be an object of feature values"))
            bad[index] = True
            continue
        for key in row:
            if key not in known:
                errors.append((index, str(key), UNKNOWN))
                bad[index] = True

    for position, spec in enumerate(specs):
        # Non-object rows are already refused; 0.0 keeps them out of the slow path below.
        cells = [
            row.get(spec.name) if ok else 0.0 for row, ok in zip(row_list, is_mapping, strict=True)
        ]
        column = _plain_column(cells)
        if column is not None:
            problem = ~np.isfinite(column)
            if spec.dtype == "int":
                problem |= ~problem & (np.floor(column) != column)
            impossible = _outside_hard_limits(spec, column) & ~problem
            unknown = _unknown_codes(spec, column) & ~problem & ~impossible
            matrix[:, position] = column
            for flagged in np.flatnonzero(problem | impossible | unknown).tolist():
                if impossible[flagged]:
                    reason = spec.hard_limit_reason()
                elif unknown[flagged]:
                    reason = spec.category_reason()
                elif not math.isfinite(column[flagged]):
                    reason = NOT_A_NUMBER
                else:
                    reason = NOT_WHOLE
                errors.append((flagged, spec.name, reason))
                bad[flagged] = True
            continue
        for index, cell in enumerate(cells):
            parsed = _parse_value(cell, spec)
            if parsed == _BLANK:
                if fill_defaults:
                    matrix[index, position] = spec.default
                    continue
                parsed = REQUIRED
            if isinstance(parsed, str):
                errors.append((index, spec.name, parsed))
                bad[index] = True
            else:
                matrix[index, position] = parsed

    errors.sort(key=lambda item: item[0])
    valid_index = np.flatnonzero(~bad)
    return RowValidation(matrix=matrix[valid_index], valid_index=valid_index, errors=errors)


def _outside_hard_limits(spec: FeatureSpec, column: np.ndarray) -> np.ndarray:
    """Rows of ``column`` past the feature's hard limits (NaN and infinity compare False)."""
    outside = np.zeros(column.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if spec.hard_minimum is not None:
            outside |= column < spec.hard_minimum
        if spec.hard_maximum is not None:
            outside |= column > spec.hard_maximum
    return outside & np.isfinite(column)


def _unknown_codes(spec: FeatureSpec, column: np.ndarray) -> np.ndarray:
    """Rows of ``column`` holding a finite value that is none of a category's codes."""
    if spec._codes is None:
        return np.zeros(column.shape, dtype=bool)
    return ~np.isin(column, list(spec._codes)) & np.isfinite(column)


def validate_frame(manifest: Manifest, frame: pd.DataFrame) -> RowValidation:
    """Validate a chunk of CSV rows column by column, without a Python loop per row.

    ``frame`` is what ``pandas.read_csv(..., keep_default_na=False, na_values=[""])`` gives:
    clean columns arrive as numbers (the fast path); a column holding any text arrives as
    strings and is parsed here. Blank cells are "required", text, NaN and infinity are
    "must be a finite number", fractions in integer features "must be a whole number", values
    past a hard limit name the limit; rows with any problem are left out of the matrix.
    """
    n_rows = len(frame)
    matrix = np.empty((n_rows, len(manifest.features)), dtype=np.float64)
    bad = np.zeros(n_rows, dtype=bool)
    problems: list[tuple[np.ndarray, str, str]] = []
    for position, spec in enumerate(manifest.features):
        if spec.name not in frame.columns:
            raise SchemaError(f"missing column {spec.name}", fields={spec.name: "missing column"})
        column = frame[spec.name]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(
            column.dtype
        ):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            blank = np.isnan(values)
        else:
            text = column.astype("string").fillna("").str.strip()
            blank = (text == "").to_numpy(dtype=bool)
            values = pd.to_numeric(text.mask(blank, "nan"), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        not_number = ~np.isfinite(values) & ~blank
        not_whole = np.zeros(n_rows, dtype=bool)
        if spec.dtype == "int":
            finite = np.isfinite(values)
            not_whole[finite] = np.floor(values[finite]) != values[finite]
        impossible = _outside_hard_limits(spec, values) & ~not_whole
        unknown = _unknown_codes(spec, values) & ~not_whole & ~impossible
        for mask, reason in (
            (blank, REQUIRED),
            (not_number, NOT_A_NUMBER),
            (not_whole, NOT_WHOLE),
            (impossible, spec.hard_limit_reason()),
            (unknown, spec.category_reason() if spec._codes is not None else ""),
        ):
            if mask.any():
                problems.append((mask, spec.name, reason))
                bad |= mask
        matrix[:, position] = values
    errors = [
        (int(index), column_name, reason)
        for mask, column_name, reason in problems
        for index in np.flatnonzero(mask)
    ]
    errors.sort(key=lambda item: item[0])
    valid_index = np.flatnonzero(~bad)
    return RowValidation(matrix=matrix[valid_index], valid_index=valid_index, errors=errors)
