"""ONNX export of trained pipelines, parity checks against scikit-learn, and runtime sessions."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlcore.engine.calibration import CLIP, Calibration
from mlcore.engine.encoding import FeatureEncoder, encoder_nodes
from mlcore.engine.errors import ArtifactError

PARITY_TOLERANCE = 1e-5
# A calibrated graph's probability may differ more: a steep stretch of the map (an overfit
# model's few rows near 0) magnifies the float32 rounding of the model's own output. The model
# part is still held to PARITY_TOLERANCE; the calibrated output to this (0.01 points).
CALIBRATED_PARITY_TOLERANCE = 1e-4
MODEL_PROBABILITY_OUTPUT = "model_probabilities"
# Metadata key naming the calibration map the graph applies (absent: none).
CALIBRATION_METADATA = "floodsite.calibration"
INPUT_NAME = "input"
PROBABILITY_OUTPUT = "probabilities"
LABEL_OUTPUT = "label"

# onnxruntime 1.31 reads models up to IR version 13; newer onnx writes 14 by default.
_IR_VERSION = 9
_OPSET = 17
_ML_OPSET = 3


def convert_to_onnx(
    pipeline: Pipeline, n_features: int, calibration: Calibration | None = None
) -> bytes:
    """Serialised ONNX model with input ``input`` [None, n_features] and a probability tensor.

    Outputs are ``label`` [None] and ``probabilities`` [None, 2], like skl2onnx without zipmap.
    Gradient-boosting pipelines are translated here into a double-precision graph: skl2onnx
    1.20 cannot convert HistGradientBoostingClassifier under the installed onnx (it emits a
    boolean where onnx now requires an integer), and float32 tree thresholds could route a
    value lying next to a split differently from scikit-learn. Logistic and random-forest
    pipelines go through skl2onnx (float32 input), which stays within PARITY_TOLERANCE; when
    they encode category or cyclic features, the preprocessing is translated here in double
    precision and only the final model goes through skl2onnx (see _encoded_graph). A model's
    ``calibration`` becomes the last part of the graph, so ``probabilities`` is the served
    (calibrated) probability for anyone running the file.
    """
    if not isinstance(pipeline, Pipeline) or not pipeline.steps:
        raise ArtifactError("ONNX export needs a fitted scikit-learn Pipeline")
    final = pipeline.steps[-1][1]
    try:
        if isinstance(final, HistGradientBoostingClassifier):
            model = _boosting_graph(pipeline, n_features)
        elif any(isinstance(step, FeatureEncoder) for _, step in pipeline.steps):
            model = _encoded_graph(pipeline, n_features)
        else:
            model = convert_sklearn(
                pipeline,
                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                options={id(final): {"zipmap": False}},
            )
            if model.ir_version > _IR_VERSION:
                model.ir_version = _IR_VERSION
        if calibration is not None:
            _append_calibration(model, calibration)
        onnx.checker.check_model(model)
        data = model.SerializeToString()
        # Building a session proves onnxruntime can run what was produced, at export time
        # rather than on the first prediction request.
        OnnxSession(data)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"ONNX conversion of {type(final).__name__} failed: {exc}",
            fields={"onnx": "conversion failed"},
        ) from exc
    return data


def _append_calibration(model: onnx.ModelProto, calibration: Calibration) -> None:
    """Rewire the graph so its outputs are the calibrated probability and its label.

    The model's own outputs are renamed (``model_probabilities``, ``model_label``) and feed
    double-precision nodes that compute exactly ``Calibration.apply``.
    """
    graph = model.graph
    renamed = {PROBABILITY_OUTPUT: MODEL_PROBABILITY_OUTPUT, LABEL_OUTPUT: "model_label"}
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    inits = graph.initializer
    nodes: list[Any] = []

    def constant(name: str, value: Any, dtype: Any = np.float64) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), "cal_" + name))
        return "cal_" + name

    nodes.append(
        helper.make_node(
            "Slice",
            [
                "model_probabilities",
                constant("start", [1], np.int64),
                constant("end", [2], np.int64),
                constant("axis", [1], np.int64),
            ],
            ["cal_p32"],
        )
    )
    nodes.append(helper.make_node("Cast", ["cal_p32"], ["cal_p"], to=TensorProto.DOUBLE))
    if calibration.method == "sigmoid":
        clip = constant("low", CLIP), constant("high", 1 - CLIP)
        one = constant("one64", 1.0)
        nodes += [
            helper.make_node("Clip", ["cal_p", *clip], ["cal_pc"]),
            helper.make_node("Sub", [one, "cal_pc"], ["cal_q"]),
            helper.make_node("Log", ["cal_pc"], ["cal_log_p"]),
            helper.make_node("Log", ["cal_q"], ["cal_log_q"]),
            helper.make_node("Sub", ["cal_log_p", "cal_log_q"], ["cal_logit"]),
            helper.make_node(
                "Mul", ["cal_logit", constant("slope", calibration.slope)], ["cal_z0"]
            ),
            helper.make_node(
                "Add", ["cal_z0", constant("intercept", calibration.intercept)], ["cal_z"]
            ),
            helper.make_node("Sigmoid", ["cal_z"], ["cal_out"]),
        ]
    else:
        # np.interp as a sum of clipped segments: y0 + sum_k slope_k * (clip(p, x_k, x_k+1) - x_k).
        x = np.asarray(calibration.x, dtype=np.float64)
        y = np.asarray(calibration.y, dtype=np.float64)
        width = np.diff(x)
        slopes = np.divide(np.diff(y), width, out=np.zeros_like(width), where=width > 0)
        low, high = constant("x_low", x[:-1][None]), constant("x_high", x[1:][None])
        nodes += [
            helper.make_node("Min", ["cal_p", high], ["cal_capped"]),
            helper.make_node("Max", ["cal_capped", low], ["cal_within"]),
            helper.make_node("Sub", ["cal_within", low], ["cal_run"]),
            helper.make_node("Mul", ["cal_run", constant("slopes", slopes[None])], ["cal_rise"]),
            helper.make_node(
                "ReduceSum",
                ["cal_rise", constant("sum_axis", [1], np.int64)],
                ["cal_total"],
                keepdims=1,
            ),
            helper.make_node("Add", ["cal_total", constant("y0", [[y[0]]])], ["cal_out"]),
        ]
    nodes += [
        helper.make_node("Cast", ["cal_out"], ["cal_positive"], to=TensorProto.FLOAT),
        helper.make_node(
            "Sub", [constant("one32", [[1.0]], np.float32), "cal_positive"], ["cal_negative"]
        ),
        helper.make_node("Concat", ["cal_negative", "cal_positive"], [PROBABILITY_OUTPUT], axis=1),
        helper.make_node("ArgMax", [PROBABILITY_OUTPUT], [LABEL_OUTPUT], axis=1, keepdims=0),
    ]
    graph.node.extend(nodes)
    # The bare model's outputs stay outputs under their new names (so the model's own parity
    # can be checked), and the calibrated ones take the public names.
    bare = list(graph.output)
    for output in bare:
        output.name = renamed.get(output.name, output.name)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(LABEL_OUTPUT, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(PROBABILITY_OUTPUT, TensorProto.FLOAT, [None, 2]),
            *bare,
        ]
    )
    entry = model.metadata_props.add()
    entry.key, entry.value = CALIBRATION_METADATA, calibration.method


def _preprocess_nodes(
    steps: list[tuple[str, Any]], n_features: int, nodes: list[Any], inits: list[Any]
) -> str:
    """Append double-precision ONNX nodes for the pipeline's preprocessing; return last output."""
    current = INPUT_NAME
    width = n_features  # columns flowing between steps; an encoder widens them
    for index, (_, step) in enumerate(steps):
        prefix = f"step{index}_"
        if isinstance(step, FeatureEncoder):
            current = encoder_nodes(step, current, prefix, nodes, inits)
            width = step.n_features_out
            continue
        if isinstance(step, SimpleImputer):
            stats = np.asarray(step.statistics_, dtype=np.float64)
            if stats.shape != (width,) or not np.all(np.isfinite(stats)):
                raise ArtifactError(
                    "the imputer's fill values do not cover every feature; cannot export"
                )
            missing = step.missing_values
            if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)):
                raise ArtifactError("only plain NaN imputation can be exported to ONNX")
            inits.append(numpy_helper.from_array(stats.reshape(1, -1), prefix + "fill"))
            nodes.append(helper.make_node("IsNaN", [current], [prefix + "isnan"]))
            nodes.append(
                helper.make_node(
                    "Where", [prefix + "isnan", prefix + "fill", current], [prefix + "out"]
                )
            )
        elif isinstance(step, StandardScaler):
            mean = step.mean_ if step.with_mean else np.zeros(width)
            scale = step.scale_ if step.with_std else np.ones(width)
            inits.append(numpy_helper.from_array(np.asarray(mean, np.float64)[None], prefix + "m"))
            inits.append(numpy_helper.from_array(np.asarray(scale, np.float64)[None], prefix + "s"))
            nodes.append(helper.make_node("Sub", [current, prefix + "m"], [prefix + "centred"]))
            nodes.append(
                helper.make_node("Div", [prefix + "centred", prefix + "s"], [prefix + "out"])
            )
        else:
            raise ArtifactError(f"cannot export a {type(step).__name__} step to ONNX")
        current = prefix + "out"
    return current


def _encoded_graph(pipeline: Pipeline, n_features: int) -> onnx.ModelProto:
    """A pipeline with encoded features: our double-precision preprocessing, then skl2onnx's
    graph of the final model alone (float32, as for an unencoded pipeline).

    skl2onnx has no converter for FeatureEncoder; computing the sines and one-hot columns in
    double and rounding once to float32 gives the model what scikit-learn's float64 transform
    gives it, up to that rounding (which a random forest applies to its input anyway).
    """
    final = pipeline.steps[-1][1]
    nodes: list[Any] = []
    inits: list[Any] = []
    features = _preprocess_nodes(pipeline.steps[:-1], n_features, nodes, inits)
    width = int(final.n_features_in_)
    head = convert_sklearn(
        final,
        initial_types=[("encoded_features", FloatTensorType([None, width]))],
        options={id(final): {"zipmap": False}},
        target_opset={"": _OPSET, "ai.onnx.ml": _ML_OPSET},
    )
    nodes.append(helper.make_node("Cast", [features], ["encoded_features"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        [*nodes, *head.graph.node],
        f"flood_risk_{type(final).__name__.lower()}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, [None, n_features])],
        list(head.graph.output),
        initializer=[*inits, *head.graph.initializer],
    )
    versions = {opset.domain: opset.version for opset in head.opset_import}
    versions.setdefault("", _OPSET)  # the preprocessing nodes need the default domain
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in versions.items()],
        ir_version=_IR_VERSION,
        producer_name="floodsite-mlcore",
    )


def _boosting_graph(pipeline: Pipeline, n_features: int) -> onnx.ModelProto:
    model: HistGradientBoostingClassifier = pipeline.steps[-1][1]
    if list(model.classes_) != [0, 1] or model.n_trees_per_iteration_ != 1:
        raise ArtifactError("only binary 0/1 gradient-boosting classifiers can be exported")
    nodes: list[Any] = []
    inits: list[Any] = []
    features = _preprocess_nodes(pipeline.steps[:-1], n_features, nodes, inits)

    tree_attrs: dict[str, Any] = {
        key: []
        for key in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
        )
    }
    thresholds: list[float] = []
    leaf_values: list[float] = []
    for tree_id, (predictor,) in enumerate(model._predictors):
        table = predictor.nodes
        if np.any(table["is_categorical"]):
            raise ArtifactError("categorical splits cannot be exported to ONNX")
        for node_id, node in enumerate(table):
            tree_attrs["nodes_treeids"].append(tree_id)
            tree_attrs["nodes_nodeids"].append(node_id)
            if node["is_leaf"]:
                tree_attrs["nodes_featureids"].append(0)
                tree_attrs["nodes_modes"].append("LEAF")
                tree_attrs["nodes_truenodeids"].append(0)
                tree_attrs["nodes_falsenodeids"].append(0)
                thresholds.append(0.0)
                tree_attrs["target_treeids"].append(tree_id)
                tree_attrs["target_nodeids"].append(node_id)
                tree_attrs["target_ids"].append(0)
                leaf_values.append(float(node["value"]))
            else:
                # scikit-learn sends x <= threshold to the left child; BRANCH_LEQ does the same.
                tree_attrs["nodes_featureids"].append(int(node["feature_idx"]))
                tree_attrs["nodes_modes"].append("BRANCH_LEQ")
                tree_attrs["nodes_truenodeids"].append(int(node["left"]))
                tree_attrs["nodes_falsenodeids"].append(int(node["right"]))
                thresholds.append(float(node["num_threshold"]))

    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1)
    nodes.append(
        helper.make_node(
            "TreeEnsembleRegressor",
            [features],
            ["raw_score"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            post_transform="NONE",
            base_values_as_tensor=numpy_helper.from_array(baseline),
            nodes_values_as_tensor=numpy_helper.from_array(np.asarray(thresholds, np.float64)),
            target_weights_as_tensor=numpy_helper.from_array(np.asarray(leaf_values, np.float64)),
            **tree_attrs,
        )
    )
    inits.append(numpy_helper.from_array(np.ones((1, 1), np.float32), "one"))
    nodes += [
        helper.make_node("Sigmoid", ["raw_score"], ["p_positive"]),
        helper.make_node("Sub", ["one", "p_positive"], ["p_negative"]),
        helper.make_node("Concat", ["p_negative", "p_positive"], [PROBABILITY_OUTPUT], axis=1),
        helper.make_node("ArgMax", [PROBABILITY_OUTPUT], [LABEL_OUTPUT], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "flood_risk_hgb",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, [None, n_features])],
        [
            helper.make_tensor_value_info(LABEL_OUTPUT, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(PROBABILITY_OUTPUT, TensorProto.FLOAT, [None, 2]),
        ],
        initializer=inits,
    )
    return helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", _OPSET),
            helper.make_opsetid("ai.onnx.ml", _ML_OPSET),
        ],
        ir_version=_IR_VERSION,
        producer_name="floodsite-mlcore",
    )


class OnnxSession:
    """A single-threaded onnxruntime session that takes float64 rows and returns P(flood)."""

    def __init__(self, onnx_bytes: bytes) -> None:
        options = ort.SessionOptions()
        # One thread per session: the web server already runs one worker per core, and
        # thread pools inside each worker would only contend for the same cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float64 if model_input.type == "tensor(double)" else np.float32
        names = [output.name for output in self.session.get_outputs()]
        if PROBABILITY_OUTPUT not in names:
            raise ArtifactError(f"the ONNX model has no {PROBABILITY_OUTPUT!r} output")
        self.output_names = [PROBABILITY_OUTPUT]
        metadata = self.session.get_modelmeta().custom_metadata_map
        # The calibration the graph already applies; None for a graph of the bare model.
        self.calibration = metadata.get(CALIBRATION_METADATA)

    def positive_probability(
        self, X: np.ndarray, *, output: str = PROBABILITY_OUTPUT
    ) -> np.ndarray:
        """P(flood) per row; ``output=MODEL_PROBABILITY_OUTPUT``: before calibration."""
        feed = {self.input_name: np.ascontiguousarray(X, dtype=self.input_dtype)}
        names = self.output_names if output == PROBABILITY_OUTPUT else [output]
        (probabilities,) = self.session.run(names, feed)
        return probabilities[:, 1].astype(np.float64)


def onnx_parity(
    pipeline: Pipeline,
    onnx_bytes: bytes,
    X: np.ndarray,
    calibration: Calibration | None = None,
    *,
    before_calibration: bool = False,
) -> float:
    """Largest absolute gap between scikit-learn's and ONNX's P(flood) over the rows of X.

    With a ``calibration``, scikit-learn's side is calibrated by ``Calibration.apply``; with
    ``before_calibration`` the calibrated graph's bare-model output is compared instead.
    """
    rows = np.asarray(X, dtype=np.float64)
    if rows.shape[0] == 0:
        return 0.0
    expected = pipeline.predict_proba(rows)[:, 1]
    if calibration is not None and not before_calibration:
        expected = calibration.apply(expected)
    output = MODEL_PROBABILITY_OUTPUT if before_calibration else PROBABILITY_OUTPUT
    actual = OnnxSession(onnx_bytes).positive_probability(rows, output=output)
    return float(np.max(np.abs(expected - actual)))


def onnx_input_dtype(onnx_bytes: bytes) -> str:
    """numpy dtype name ("float64" or "float32") the exported model expects for ``input``."""
    model = onnx.load_from_string(onnx_bytes)
    elem_type = model.graph.input[0].type.tensor_type.elem_type
    return "float64" if elem_type == TensorProto.DOUBLE else "float32"
