"""Encoding category and cyclic features inside the pipeline, and the same as ONNX nodes.

A cyclic feature (a month) becomes its sine and cosine, ``2 pi (x - start) / period`` around
the circle, so December sits next to January; ``start`` is the feature's hard minimum (0 when it
has none), which only turns the circle and changes nothing a model can learn. A category
becomes one 0/1 column per listed code; a value that is none of the codes (the service refuses
them, but a blank training cell filled with a median can land between two codes) is all zeros.
Numbers and integers pass through unchanged.

The sines and cosines are rounded to ``1 / _GRID``: cos(pi / 2) is 6e-17 and cos(3 pi / 2) is
-2e-16, so a tree could split between April and October on rounding error, and onnxruntime's
cosine need not round as numpy's does. On the grid both are exactly zero, in both backends.

Output columns are named after their input (``month_sin``, ``soil_type=2``) so that an
explanation can add each input's columns back together (explanation._column_owners).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from sklearn.base import BaseEstimator, TransformerMixin

from mlcore.engine.schema import FeatureSpec

_GRID = 1e9


def needs_encoding(specs: Sequence[FeatureSpec]) -> bool:
    return any(spec.kind in ("category", "cyclic") for spec in specs)


def encoder_for(specs: Sequence[FeatureSpec]) -> FeatureEncoder:
    """An encoder for features in schema order (unfitted, though fitting learns nothing)."""
    plan: list[tuple[str, Any]] = []
    for spec in specs:
        if spec.kind == "cyclic":
            assert spec.period is not None  # FeatureSpec refuses a cyclic feature without one
            start = spec.hard_minimum if spec.hard_minimum is not None else 0.0
            plan.append(("cyclic", (float(start), float(spec.period))))
        elif spec.kind == "category":
            plan.append(("category", tuple(code for code, _ in spec.categories)))
        else:
            plan.append(("number", None))
    return FeatureEncoder(plan=tuple(plan))


class FeatureEncoder(TransformerMixin, BaseEstimator):
    """Widens each input column by its kind; ``plan`` has one (kind, detail) per input column.

    ``detail`` is (start, period) for "cyclic", the tuple of codes for "category" and None
    for "number". Nothing is learnt from the data: the plan comes from the feature specs.
    """

    def __init__(self, plan: tuple[tuple[str, Any], ...] = ()) -> None:
        self.plan = plan

    def fit(self, X: Any, y: Any = None) -> FeatureEncoder:
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.plan):
            raise ValueError(f"expected {len(self.plan)} columns, got {matrix.shape}")
        self.n_features_in_ = matrix.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.plan):
            raise ValueError(f"expected {len(self.plan)} columns, got {matrix.shape}")
        parts: list[np.ndarray] = []
        for index, (kind, detail) in enumerate(self.plan):
            column = matrix[:, index : index + 1]
            if kind == "cyclic":
                start, period = detail
                angle = (column - start) * (2.0 * math.pi / period)
                parts += [
                    np.rint(np.sin(angle) * _GRID) / _GRID,
                    np.rint(np.cos(angle) * _GRID) / _GRID,
                ]
            elif kind == "category":
                codes = np.asarray(detail, dtype=np.float64)[None, :]
                parts.append((column == codes).astype(np.float64))
            else:
                parts.append(column)
        return np.hstack(parts) if parts else np.empty((matrix.shape[0], 0))

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        names = (
            list(input_features)
            if input_features is not None
            else [f"x{index}" for index in range(len(self.plan))]
        )
        if len(names) != len(self.plan):
            raise ValueError(f"expected {len(self.plan)} feature names, got {len(names)}")
        out: list[str] = []
        for name, (kind, detail) in zip(names, self.plan, strict=True):
            if kind == "cyclic":
                out += [f"{name}_sin", f"{name}_cos"]
            elif kind == "category":
                out += [f"{name}={code}" for code in detail]
            else:
                out.append(name)
        return np.asarray(out, dtype=object)

    @property
    def n_features_out(self) -> int:
        return sum(
            2 if kind == "cyclic" else len(detail) if kind == "category" else 1
            for kind, detail in self.plan
        )


def encoder_nodes(
    encoder: FeatureEncoder, current: str, prefix: str, nodes: list[Any], inits: list[Any]
) -> str:
    """Append double-precision ONNX nodes computing ``encoder.transform``; return the output."""
    pieces: list[str] = []
    inits.append(numpy_helper.from_array(np.asarray([_GRID], np.float64), prefix + "grid"))
    for index, (kind, detail) in enumerate(encoder.plan):
        name = f"{prefix}col{index}"
        inits.append(numpy_helper.from_array(np.asarray([index], np.int64), name + "_at"))
        nodes.append(helper.make_node("Gather", [current, name + "_at"], [name], axis=1))
        if kind == "cyclic":
            start, period = detail
            inits.append(numpy_helper.from_array(np.asarray([start], np.float64), name + "_0"))
            turn = np.asarray([2.0 * math.pi / period], np.float64)
            inits.append(numpy_helper.from_array(turn, name + "_turn"))
            nodes += [
                helper.make_node("Sub", [name, name + "_0"], [name + "_shift"]),
                helper.make_node("Mul", [name + "_shift", name + "_turn"], [name + "_angle"]),
            ]
            for wave in ("Sin", "Cos"):
                raw = f"{name}_{wave.lower()}"
                nodes += [
                    helper.make_node(wave, [name + "_angle"], [raw + "_raw"]),
                    helper.make_node("Mul", [raw + "_raw", prefix + "grid"], [raw + "_up"]),
                    helper.make_node("Round", [raw + "_up"], [raw + "_whole"]),
                    helper.make_node("Div", [raw + "_whole", prefix + "grid"], [raw]),
                ]
            pieces += [name + "_sin", name + "_cos"]
        elif kind == "category":
            codes = np.asarray(detail, np.float64)[None, :]
            inits.append(numpy_helper.from_array(codes, name + "_codes"))
            nodes += [
                helper.make_node("Equal", [name, name + "_codes"], [name + "_is"]),
                helper.make_node("Cast", [name + "_is"], [name + "_hot"], to=TensorProto.DOUBLE),
            ]
            pieces.append(name + "_hot")
        else:
            pieces.append(name)
    nodes.append(helper.make_node("Concat", pieces, [prefix + "out"], axis=1))
    return prefix + "out"
