"""Export the calibrated scikit-learn model to ONNX so serving needs neither sklearn nor scipy.

Contract: input ``input`` float32 ``[None, k]``, the book's model input (numbers normalized, a
category as its value's index; see ``loan_service.book``); outputs ``probabilities`` float32
``[None, 2]`` and ``log_odds`` float64 ``[None, 1]``; no ZipMap. Parity with scikit-learn must hold
to 1e-6 on every training row.

* Categories are one-hot encoded inside the graph, exactly as the pickle's ``ColumnTransformer``
  does (``loan_service.sklearn_model``): per category ``Equal(column, [0, 1, ..., m-1])``, then
  the numbers, concatenated in the transformer's order. A book without categories has no such
  nodes: its graph is the calibrated model's own.
* ``log_odds`` is the calibrated log-odds of default before the Platt sigmoid (the negated
  argument of its ``Exp``), in float64: reasons compare applicants in log-odds, where the
  probability of a clear decline is exactly 1.0 and every difference would be lost.

Why the graph computes in float64 inside a float32 shell:

* scikit-learn casts the input to float32 for trees, but computes linear models, the forest's
  average and the Platt sigmoid in float64. A float32 ONNX graph rounds every one of those
  steps; with the large coefficients a nearly separable loan book produces, that rounding reaches
  ~1e-6 and grows with the coefficients. So the graph is converted with a float64 input: the
  float32 ``input`` is cast to float64 (exact), every step then matches scikit-learn's arithmetic,
  and only the final probabilities are rounded to float32.
* Tree thresholds: scikit-learn compares ``(float32) x <= (float64) threshold``. skl2onnx's
  float64 tree converter stores thresholds chosen so that the same comparison holds for every
  float32 ``x`` (``skl2onnx.common.tree_ensemble.sklearn_threshold``), so no branch flips.
* Only ``probabilities`` is an output. skl2onnx also computes a ``label`` (ArgMax and friends);
  ONNX Runtime runs every node of a graph whatever outputs are requested, and those nodes cost
  ~3.5 us of a ~14 us single-request call (measured on the logistic model), so they are dropped.
  Serving applies the manifest's threshold to P(default) itself.
* The calibrator's scalar constants (the Platt ``a`` and ``b``, its ``1.0``) are stored as
  ``[1, 1]`` tensors: the same numbers, so every output is the same bit for bit, but ONNX Runtime
  broadcasts a rank-0 constant against an ``[n, 1]`` value one element at a time (~25 ns a row
  per op against ~0.5 ns for ``[1, 1]``; measured with onnxruntime 1.32 on CPU), which made those
  six small ops most of the logistic model's call.
* ``TreeEnsembleClassifier`` (ai.onnx.ml opset 3) emits float32 scores whatever its input type,
  while the calibrator's nodes downstream are float64; skl2onnx does not reconcile the two for a
  calibrated forest, so a ``Cast`` to float64 is inserted after each tree ensemble.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from loan_service.book import BookSchema
from loan_service.sklearn_model import calibrated_log_odds
from training.schema import DEFAULT_BOOK

ONNX_INPUT = "input"
ONNX_PROBABILITIES = "probabilities"
ONNX_LOG_ODDS = "log_odds"
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
PARITY_TOLERANCE = 1e-6

_INNER_INPUT = "input_float64"
_DESIGN = "design_float64"
_INNER_PROBABILITIES = "probabilities_float64"
_ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div"})
_TREE_ENSEMBLE_OPS = {"TreeEnsembleClassifier": 1, "TreeEnsembleRegressor": 0}
"""Tree-ensemble op type -> index of its float32-only score output."""


class OnnxParityError(RuntimeError):
    """The exported graph does not reproduce scikit-learn's probabilities."""


def convert_to_onnx(
    model: Any, metadata: dict[str, str] | None = None, book: BookSchema = DEFAULT_BOOK
) -> Any:
    """Convert a fitted binary classifier (or its one-hot ``Pipeline``) to the contract's ONNX
    graph (``onnx.ModelProto``)."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    calibrated = model.steps[-1][1] if hasattr(model, "steps") else model
    design = _DESIGN if book.categories else _INNER_INPUT
    proto = convert_sklearn(
        calibrated,
        name="loan_default",
        initial_types=[(design, DoubleTensorType([None, int(calibrated.n_features_in_)]))],
        options={id(calibrated): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    graph = proto.graph
    _rename_value(graph, ONNX_PROBABILITIES, _INNER_PROBABILITIES)

    nodes = [
        helper.make_node(
            "Cast", [ONNX_INPUT], [_INNER_INPUT], to=TensorProto.DOUBLE, name="cast_input"
        )
    ]
    if book.categories:
        nodes.extend(_one_hot_nodes(graph, book))
    for node in graph.node:
        nodes.append(node)
        score_index = _TREE_ENSEMBLE_OPS.get(node.op_type)
        if score_index is not None and node.domain == "ai.onnx.ml":
            scores = node.output[score_index]
            node.output[score_index] = f"{scores}_float32"
            nodes.append(
                helper.make_node(
                    "Cast",
                    [f"{scores}_float32"],
                    [scores],
                    to=TensorProto.DOUBLE,
                    name=f"cast_{scores}_to_float64",
                )
            )
    sigmoid_argument = _sigmoid_argument(graph)
    nodes.append(
        helper.make_node(
            "Cast",
            [_INNER_PROBABILITIES],
            [ONNX_PROBABILITIES],
            to=TensorProto.FLOAT,
            name="cast_probabilities",
        )
    )
    nodes.append(helper.make_node("Neg", [sigmoid_argument], [ONNX_LOG_ODDS], name="log_odds"))
    del graph.node[:]
    graph.node.extend(_nodes_feeding(nodes, {ONNX_PROBABILITIES, ONNX_LOG_ODDS}))
    consumed = {name for node in graph.node for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in consumed]
    for tensor in unused:  # constants only the dropped label branch read
        graph.initializer.remove(tensor)

    width = len(book.features)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, width]))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(ONNX_PROBABILITIES, TensorProto.FLOAT, [None, 2])
    )
    graph.output.append(helper.make_tensor_value_info(ONNX_LOG_ODDS, TensorProto.DOUBLE, [None, 1]))

    proto.doc_string = (
        f"P(default) of a loan. Input: float32 [n, {width}], in this order: "
        f"{', '.join(book.feature_names)}; numbers normalized as (x - mean) / std with "
        "stats.json, a category as the index of its value in the manifest schema's values. "
        "Output 'probabilities' column 1 = P(default); 'log_odds' the calibrated log-odds "
        "of default (float64)."
    )
    _matrix_shaped_scalars(proto, width)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _one_hot_nodes(graph: Any, book: BookSchema) -> list[Any]:
    """input_float64 [n, k] -> design_float64: one-hot blocks of the categories, then numbers."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    pieces = []
    for index, feature in enumerate(book.features):
        if not feature.is_category:
            continue
        size = len(feature.values or ())
        column, levels = f"column_{index}", f"levels_{index}"
        graph.initializer.append(
            numpy_helper.from_array(np.array([index], dtype=np.int64), f"{column}_index")
        )
        graph.initializer.append(
            numpy_helper.from_array(np.arange(size, dtype=np.float64).reshape(1, size), levels)
        )
        nodes += [
            helper.make_node("Gather", [_INNER_INPUT, f"{column}_index"], [column], axis=1),
            helper.make_node("Equal", [column, levels], [f"{column}_is"]),
            helper.make_node(
                "Cast", [f"{column}_is"], [f"{column}_one_hot"], to=TensorProto.DOUBLE
            ),
        ]
        pieces.append(f"{column}_one_hot")
    numbers = [index for index, feature in enumerate(book.features) if not feature.is_category]
    if numbers:
        graph.initializer.append(
            numpy_helper.from_array(np.array(numbers, dtype=np.int64), "number_columns")
        )
        nodes.append(
            helper.make_node("Gather", [_INNER_INPUT, "number_columns"], ["numbers"], axis=1)
        )
        pieces.append("numbers")
    nodes.append(helper.make_node("Concat", pieces, [_DESIGN], axis=1, name="design"))
    return nodes


def _matrix_shaped_scalars(proto: Any, width: int) -> None:
    """Reshape to ``[1, 1]`` each scalar constant that only elementwise ops read, against values
    of rank 2 only (``[n, m]``): there a ``[1, 1]`` constant broadcasts exactly as a scalar does,
    to the other value's shape, with the same arithmetic. The ranks are those ONNX Runtime gives
    on a probe batch (shape inference does not follow the ``ai.onnx.ml`` ops)."""
    import onnxruntime
    from onnx import helper

    graph = proto.graph
    scalars = {tensor.name: tensor for tensor in graph.initializer if not tensor.dims}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            if name in scalars:
                readers.setdefault(name, []).append(node)
    candidates = {
        name: nodes
        for name, nodes in readers.items()
        if all(node.op_type in _ELEMENTWISE_OPS for node in nodes)
    }
    if not candidates:
        return
    constants = {tensor.name: len(tensor.dims) for tensor in graph.initializer}
    operands = sorted(
        {
            name
            for nodes in candidates.values()
            for node in nodes
            for name in node.input
            if name not in constants
        }
    )
    probe = type(proto)()
    probe.CopyFrom(proto)
    present = {output.name for output in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(name) for name in operands if name not in present
    )
    session = onnxruntime.InferenceSession(
        probe.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    values = session.run(operands, {ONNX_INPUT: np.zeros((2, width), dtype=np.float32)})
    ranks = dict(constants)
    ranks.update((name, value.ndim) for name, value in zip(operands, values, strict=True))
    for name, nodes in candidates.items():
        others = [other for node in nodes for other in node.input if other != name]
        if others and all(ranks[other] == 2 for other in others):
            scalars[name].dims.extend([1, 1])


def _sigmoid_argument(graph: Any) -> str:
    """The value the Platt sigmoid exponentiates: P(default) = 1 / (1 + exp(it))."""
    exps = [node for node in graph.node if node.op_type == "Exp"]
    if len(exps) != 1:
        raise OnnxParityError(
            f"expected one Exp (the Platt sigmoid) in the calibrated graph, found {len(exps)}"
        )
    return str(exps[0].input[0])


def _nodes_feeding(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """The nodes ``outputs`` depend on, in their original (topological) order."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    return kept[::-1]


def _rename_value(graph: Any, old: str, new: str) -> None:
    """Rename a value everywhere it is produced or consumed."""
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new
        for index, name in enumerate(node.output):
            if name == old:
                node.output[index] = new


def onnx_outputs(
    model_bytes: bytes, model_input: npt.NDArray[np.floating[Any]]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """P(default) and the log-odds from the ONNX graph with ONNX Runtime, as serving computes."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    batch = np.ascontiguousarray(model_input, dtype=np.float32)
    probabilities, log_odds = session.run([ONNX_PROBABILITIES, ONNX_LOG_ODDS], {ONNX_INPUT: batch})
    return (
        np.asarray(probabilities[:, 1], dtype=np.float32),
        np.asarray(log_odds[:, 0], dtype=np.float64),
    )


def onnx_probabilities(
    model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.float32]:
    """P(default) from the ONNX graph with ONNX Runtime, as serving computes it."""
    return onnx_outputs(model_bytes, normalized_features)[0]


def max_parity_gap(
    model: Any, model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> float:
    """Largest |ONNX - scikit-learn| P(default), both fed the same float32 rows."""
    return parity_gaps(model, model_bytes, normalized_features)[0]


def parity_gaps(
    model: Any, model_bytes: bytes, model_input: npt.NDArray[np.floating[Any]]
) -> tuple[float, float]:
    """Largest P(default) gap, and largest log-odds gap relative to max(1, |log-odds|)."""
    batch = np.ascontiguousarray(model_input, dtype=np.float32)
    expected = model.predict_proba(batch)[:, 1]
    expected_log_odds = calibrated_log_odds(model, batch)
    actual, log_odds = onnx_outputs(model_bytes, batch)
    gap = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    relative = np.abs(log_odds - expected_log_odds) / np.maximum(1.0, np.abs(expected_log_odds))
    return gap, float(np.max(relative))


def verify_parity(
    model: Any, model_bytes: bytes, normalized_features: npt.NDArray[np.floating[Any]]
) -> float:
    """Refuse to ship an ONNX graph that disagrees with the pickle; return the gap found."""
    gap, log_odds_gap = parity_gaps(model, model_bytes, normalized_features)
    if not gap <= PARITY_TOLERANCE:
        raise OnnxParityError(
            f"ONNX and scikit-learn probabilities differ by up to {gap:.3g} "
            f"(tolerance {PARITY_TOLERANCE:g}); model.onnx was not written"
        )
    if not log_odds_gap <= PARITY_TOLERANCE:
        raise OnnxParityError(
            f"ONNX and scikit-learn log-odds differ by up to {log_odds_gap:.3g} (relative; "
            f"tolerance {PARITY_TOLERANCE:g}); model.onnx was not written"
        )
    return gap
